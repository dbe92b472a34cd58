"""A class that wants 5 nodes with two ports each, and can make do with 3."""
import disttest
from tests.nodefuncs import node_name
from tests.record import record


class Wide(disttest.DistributedTestCase):
    cluster_size = 5
    min_cluster_size = 3
    node_ports = ("app", "admin")
    node_env = {"SAMPLE_GROUP": "wide"}

    def test_runs_on_what_could_start(self):
        names = self.cluster.call_all(node_name)
        record(self, names=names, ports=[sorted(n.ports) for n in self.nodes])
        self.assertGreaterEqual(len(names), 3)
