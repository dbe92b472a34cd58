"""A class whose nodes die while they start.

While its cluster starts, PYTHONHOME points at a directory that does not
exist, so every node interpreter fails before it is ready, the way a broken
virtualenv or a bad interpreter setting makes it. Simulated nodes (threads of
the test process) do not start an interpreter, so they work.
"""
import os

import disttest
from tests.nodefuncs import node_name
from tests.record import record


class Broken(disttest.DistributedTestCase):
    cluster_size = 3
    node_env = {"SAMPLE_GROUP": "broken"}  # its own cluster, apart from Healthy's

    @classmethod
    def setUpClass(cls):
        saved = os.environ.get("PYTHONHOME")
        os.environ["PYTHONHOME"] = "/nonexistent/python-home"
        try:
            super().setUpClass()
        finally:
            if saved is None:
                del os.environ["PYTHONHOME"]
            else:
                os.environ["PYTHONHOME"] = saved

    def test_runs_on_its_nodes(self):
        names = self.cluster.call_all(node_name)
        record(self, names=names)
        self.assertEqual(names, ["node-0", "node-1", "node-2"])

    @disttest.requires_real_cluster
    def test_needs_real_processes(self):
        record(self)
        self.assertNotIn(os.getpid(), [node.pid for node in self.nodes])
