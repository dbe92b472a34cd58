"""A register kept on node-0, checked with a history while the nemesis pauses nodes.

``test_correct_register`` reads what was written last; ``test_stale_register``
has a planted bug: a read answers the value before the last write. Each test
writes the faults the nemesis drew to ``$SAMPLE_LOG`` (one JSON line).
"""
from __future__ import annotations

import json
import os

import disttest
from disttest import this_node


def write(value):
    state = this_node.state
    state["previous"], state["value"] = state.get("value"), value


def read(stale):
    return this_node.state.get("previous" if stale else "value")


class RegisterTest(disttest.DistributedTestCase):
    cluster_size = 3

    def run_clients(self, stale: bool) -> None:
        history = self.history()
        store = self.nodes[0]
        with disttest.Nemesis(self.cluster, history, faults=("pause",),
                              fault_seconds=(0.05, 0.1), duty=0.5) as nemesis:
            for i in range(20):
                with history.op("c0", "write", i):
                    store.call(write, i)
                with history.op("c0", "read") as op:
                    op.ok(store.call(read, stale))
            self.wait_until(lambda: len(nemesis.injected) >= 2, timeout=30)
        with open(os.environ["SAMPLE_LOG"], "a") as log:
            log.write(json.dumps({"id": self.id(), "seed": nemesis.seed,
                                  "faults": nemesis.injected[:2]}) + "\n")
        self.assertLinearizable(history, disttest.Register())

    def test_correct_register(self):
        self.run_clients(stale=False)

    def test_stale_register(self):
        self.run_clients(stale=True)
