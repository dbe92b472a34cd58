"""Cluster classes: two that share a growing cluster, one with its own
requirement (node_env), and one that fails when ``$SAMPLE_FAIL`` is set.
With ``$SAMPLE_LEAK`` set, OwnEnv's node starts a ``sleep 60`` child that
nothing stops (a leak for the clean-up check), its pid marked ``child``."""
import os
import subprocess

import disttest
from tests.mark import mark, nap


class Base(disttest.DistributedTestCase):
    __test__ = False

    def run_one(self):
        mark("test", self.id(), self.cluster)
        nap()


class SmallShared(Base):
    __test__ = True
    cluster_size = 1

    def test_a(self):
        self.run_one()

    def test_b(self):
        self.run_one()


class BigShared(Base):
    __test__ = True
    cluster_size = 2

    def test_a(self):
        self.run_one()

    def test_b(self):
        self.run_one()


def start_sleeper():
    return subprocess.Popen(["sleep", "60"]).pid


class OwnEnv(Base):
    __test__ = True
    cluster_size = 1
    node_env = {"SAMPLE_GROUP": "own"}

    def test_a(self):
        self.run_one()
        if os.environ.get("SAMPLE_LEAK"):
            mark("child", str(self.nodes[0].call(start_sleeper)))

    def test_b(self):
        self.run_one()


class MayFail(Base):
    __test__ = True
    cluster_size = 1
    node_env = {"SAMPLE_GROUP": "fails"}

    def test_a_fails(self):
        self.run_one()
        if os.environ.get("SAMPLE_FAIL"):
            self.fail("failed on purpose")

    def test_b(self):
        self.run_one()
