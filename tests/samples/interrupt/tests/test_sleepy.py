"""A cluster test that sleeps, to be interrupted (Ctrl-C, SIGTERM) while it runs.

``test_1_sleeps`` writes ``$SAMPLE_MARKERS`` (when set) once it runs on its
cluster, then sleeps ``$SAMPLE_SLEEP`` seconds (default 2).
"""
import os
import time
import unittest

import disttest


def _mark(text):
    path = os.environ.get("SAMPLE_MARKERS")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


class Sleepy(disttest.DistributedTestCase):
    cluster_size = 2

    def test_1_sleeps(self):
        _mark(f"started {self.cluster.id} {' '.join(str(n.pid) for n in self.nodes)}")
        time.sleep(float(os.environ.get("SAMPLE_SLEEP", "2")))
        _mark("slept")

    def test_2_after(self):
        _mark("test_2_after")


class SleepyBigger(disttest.DistributedTestCase):
    cluster_size = 3

    def test_3_later(self):
        _mark("test_3_later")


class ZPlainLast(unittest.TestCase):

    def test_4_plain(self):
        _mark("test_4_plain")
