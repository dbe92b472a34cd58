"""Cluster tests whose nodes log, break and fail, for the HTML report."""
import disttest
from tests.nodefuncs import say


class ABreaksNodes(disttest.DistributedTestCase):
    cluster_size = 2

    def test_1_pause_and_restart(self):
        self.nodes[0].call(say, "alpha-before-restart")
        self.nodes[1].pause()
        self.nodes[1].resume()
        self.nodes[0].kill()
        self.nodes[0].restart()
        self.nodes[0].call(say, "alpha-after-restart")

    def test_2_fails_with_logs(self):
        self.nodes[1].call(say, "bravo-node1-says-goodbye")
        self.nodes[0].call(say, "bravo-node0 </script><b>not markup</b>")
        self.fail("bravo failed on purpose")


class BNetwork(disttest.DistributedTestCase):
    cluster_size = 3
    network = "proxy"

    def test_3_partition_and_heal(self):
        self.nodes[2].call(say, "charlie-before-partition")
        self.cluster.partition(["node-0", "node-1"], ["node-2"])
        self.cluster.heal()
        self.cluster.delay("node-0", "node-1", 0.01)
