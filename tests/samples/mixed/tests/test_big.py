"""Larger and special clusters: 5 nodes, a method-level size, fresh, node_env."""
import disttest
from tests.nodefuncs import getenv, node_name
from tests.record import record


class Five(disttest.DistributedTestCase):
    cluster_size = 5

    def test_five_nodes(self):
        names = self.cluster.call_all(node_name)
        record(self, names=names)
        self.assertEqual(len(names), len(self.nodes))


class MethodSized(disttest.DistributedTestCase):
    cluster_size = 2

    def test_class_size(self):
        record(self)
        self.assertGreaterEqual(len(self.nodes), 1)

    @disttest.cluster_size(4)
    def test_four(self):
        record(self, names=self.cluster.call_all(node_name))


@disttest.fresh_cluster
class Fresh(disttest.DistributedTestCase):
    cluster_size = 2

    def test_fresh(self):
        record(self)
        self.assertEqual(self.nodes[1].call(node_name), "node-1")


class WithEnv(disttest.DistributedTestCase):
    cluster_size = 2
    node_env = {"MIXED_MODE": "from-node-env"}

    def test_env_on_every_node(self):
        values = self.cluster.call_all(getenv, "MIXED_MODE")
        record(self, env=values)
        self.assertEqual(values, ["from-node-env"] * len(self.nodes))
