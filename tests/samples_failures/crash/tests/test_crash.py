"""Nodes that crash mid-test, a node killed on purpose, a setUpCluster that fails.

Every class has the same requirement, so one cluster serves them all in
name order, repaired (dead nodes replaced) between classes.
"""
import disttest
from disttest.errors import NodeCrashedError
from tests.nodefuncs import die, node_name, say


class ACrashes(disttest.DistributedTestCase):
    cluster_size = 2

    def test_node_dies_during_a_call(self):
        self.nodes[1].call(die, "journal flushed, exiting now", 3)


class BAfterTheCrash(disttest.DistributedTestCase):
    cluster_size = 2

    def test_the_cluster_was_repaired(self):
        self.assertClusterHealthy()
        self.assertEqual(self.cluster.call_all(node_name), ["node-0", "node-1"])


class CKillsOnPurpose(disttest.DistributedTestCase):
    cluster_size = 2

    def test_a_killed_node_raises_node_crashed(self):
        node = self.nodes[0]
        node.kill()
        with self.assertRaises(NodeCrashedError) as caught:
            node.call(node_name)
        self.assertIn("node node-0 is not running (killed by signal SIGKILL)",
                      str(caught.exception))


class DSetupFails(disttest.DistributedTestCase):
    cluster_size = 2

    @classmethod
    def setUpCluster(cls):
        cls.cluster.call_all(say, "loading fixtures from /srv/fixtures")
        raise RuntimeError("fixture data missing")

    def test_never_runs(self):
        raise AssertionError("ran after a failed setUpCluster")

    def test_never_runs_either(self):
        raise AssertionError("ran after a failed setUpCluster")


class EAfterTheFailedSetup(disttest.DistributedTestCase):
    cluster_size = 2

    def test_the_cluster_still_works(self):
        self.assertEqual(self.cluster.call_all(node_name), ["node-0", "node-1"])
