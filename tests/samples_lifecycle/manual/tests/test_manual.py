"""Plain unittest classes that manage their clusters with ClusterTestHelper.

Runs the same under ``python -m disttest``, ``python -m unittest`` and pytest.
"""
import os
import unittest

import disttest


def pid():
    return os.getpid()


def _mark(text):
    path = os.environ.get("SAMPLE_MARKERS")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


class ClassWide(unittest.TestCase):
    """One cluster for the class, from setUpClass, through a helper object."""

    @classmethod
    def setUpClass(cls):
        cls.helper = disttest.ClusterTestHelper()
        cls.cluster = cls.helper.start_test_cluster(2)
        cls.addClassCleanup(cls.helper.stop_test_cluster, cls.cluster)

    def test_every_node_answers(self):
        pids = self.cluster.call_all(pid)
        _mark(f"cluster {self.cluster.id} " + " ".join(map(str, pids)))
        self.assertEqual(len(set(pids)), 2)
        self.assertEqual(self.helper.cluster_nodes(), list(self.cluster.nodes))


class PerTest(disttest.ClusterTestHelper, unittest.TestCase):
    """A cluster per test, from setUp, with the helper as a mixin."""

    def setUp(self):
        self.cluster = self.start_test_cluster(3)
        self.addCleanup(self.stop_test_cluster, self.cluster)

    def test_wait_for_cluster(self):
        nodes = self.wait_for_cluster(3, timeout=10)
        _mark(f"cluster {self.cluster.id} " + " ".join(str(node.pid) for node in nodes))
        self.assertEqual([node.name for node in nodes], ["node-0", "node-1", "node-2"])
        self.assertEqual(self.cluster_nodes(), list(self.cluster.nodes))
