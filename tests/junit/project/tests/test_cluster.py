"""A cluster class of two nodes: its suite carries the cluster's properties."""
import disttest


class Pair(disttest.DistributedTestCase):
    cluster_size = 2

    def test_two_nodes(self):
        self.assertEqual(len(self.nodes), 2)

    def test_prints_and_fails(self):
        print("stdout-of-a-cluster-test")
        self.assertEqual(len(self.nodes), 3, "wrong node count on purpose")
