"""A 2-node class whose test leaves a call stuck on node-0 (kept clusters)."""
import os
import threading

import disttest


def _mark(text):
    path = os.environ.get("SAMPLE_MARKERS")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


def block_forever():
    threading.Event().wait()


class StuckCall(disttest.DistributedTestCase):
    cluster_size = 2

    def test_leaves_a_call_running(self):
        self.nodes[0].submit(block_forever)  # never waited for
        _mark("pids " + " ".join(str(node.pid) for node in self.nodes))
