"""Small clusters: 2 and 3 nodes, with tags."""
import disttest
from tests.nodefuncs import node_name
from tests.record import record


class Two(disttest.DistributedTestCase):
    cluster_size = 2
    tags = {"replication"}

    def test_two_nodes(self):
        names = self.cluster.call_all(node_name)
        record(self, names=names)
        self.assertEqual(names, [f"node-{i}" for i in range(len(self.nodes))])


class Three(disttest.DistributedTestCase):
    cluster_size = 3

    def test_three_nodes(self):
        names = self.cluster.call_all(node_name)
        record(self, names=names)
        self.assertEqual(len(names), len(self.nodes))

    @disttest.tag("smoke")
    def test_three_smoke(self):
        record(self)
        self.assertEqual(self.nodes[0].call(node_name), "node-0")
