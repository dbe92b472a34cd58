"""A cluster test to interrupt while it sleeps, with a second cluster alive.

``test_1_sleeps`` starts a 1-node cluster by hand (so two clusters are up),
appends ``clusters <both ids>`` and ``started <pids of all three nodes>`` to
``$SAMPLE_MARKERS``, sleeps ``$SAMPLE_SLEEP`` seconds (default 5) and appends
``slept``. ``test_2_after`` appends ``test_2_after``. With ``$SAMPLE_PAUSE``
set, node-0 of the class's cluster is paused (SIGSTOP) first.
"""
import os
import time

import disttest


def _mark(text):
    path = os.environ.get("SAMPLE_MARKERS")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


class Sleepy(disttest.DistributedTestCase):
    cluster_size = 2

    def test_1_sleeps(self):
        extra = disttest.start_cluster(1)
        if os.environ.get("SAMPLE_PAUSE"):
            self.nodes[0].pause()
        nodes = list(self.nodes) + list(extra.nodes)
        _mark(f"clusters {self.cluster.id} {extra.id}")
        _mark("started " + " ".join(str(node.pid) for node in nodes))
        time.sleep(float(os.environ.get("SAMPLE_SLEEP", "5")))
        _mark("slept")

    def test_2_after(self):
        _mark("test_2_after")
