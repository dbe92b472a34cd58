"""A class whose cluster starts: it runs whatever happens to the others."""
import disttest
from tests.nodefuncs import node_name
from tests.record import record


class Healthy(disttest.DistributedTestCase):
    cluster_size = 2

    def test_runs_on_two_nodes(self):
        names = self.cluster.call_all(node_name)
        record(self, names=names)
        self.assertEqual(names, ["node-0", "node-1"])
