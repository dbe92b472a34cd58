"""The whole node and cluster API, written once, passing on real and simulated nodes."""
import concurrent.futures
import os

import disttest
from disttest.errors import NodeCrashedError
from tests import nodefuncs as nf
from tests.record import record


class Api(disttest.DistributedTestCase):
    cluster_size = 3
    node_ports = ("app",)

    @classmethod
    def setUpCluster(cls):
        cls.cluster.call_all(nf.serve_name)

    def test_call_and_identity(self):
        infos = [node.call(nf.identity) for node in self.nodes]
        record(self, names=[i["name"] for i in infos])
        self.assertEqual([i["name"] for i in infos], ["node-0", "node-1", "node-2"])
        self.assertEqual([i["index"] for i in infos], [0, 1, 2])
        for node, info in zip(self.nodes, infos):
            self.assertEqual(info["cluster"], self.cluster.id)
            self.assertEqual(info["port"], node.port("app"))
            self.assertEqual(info["host"], node.host)
            expected = {other.name: (other.host, other.port()) for other in self.nodes
                        if other is not node}
            self.assertEqual({k: tuple(v) for k, v in info["peers"].items()}, expected)

    def test_call_all_and_submit(self):
        self.assertEqual(self.cluster.call_all(nf.add, 2, 3), [5, 5, 5])
        future = self.nodes[1].submit(nf.slow_add, 1, 2, 0.05)
        self.assertEqual(future.result(timeout=10), 3)

    def test_services_reach_each_other(self):
        answers = self.nodes[0].call(nf.ask_peers)
        self.assertEqual(answers, {"node-1": f"{self.cluster.id} node-1",
                                   "node-2": f"{self.cluster.id} node-2"})

    def test_spawn(self):
        node = self.nodes[0]
        self.assertEqual(node.spawn(nf.slow_add, 2, 2, 0.05).result(timeout=10), 4)
        background = node.spawn(nf.work_until_stopped)
        self.assertTrue(background.running())  # stopped by the reset after the class

    def test_state_is_per_node(self):
        first, second = self.nodes[:2]
        first.call(nf.remember, "key", "first")
        self.assertEqual(first.call(nf.recall, "key"), "first")
        self.assertIsNone(second.call(nf.recall, "key"))

    def test_logs_name_the_node(self):
        for node in self.nodes:
            self.assertIn(f"node {node.name} of cluster {self.cluster.id}", node.logs())
            self.assertTrue(node.logs(tail=1).strip())

    def test_pause_and_resume(self):
        node = self.nodes[1]
        node.pause()
        try:
            future = node.submit(nf.add, 20, 22)
            with self.assertRaises(concurrent.futures.TimeoutError):  # TimeoutError on 3.11+
                future.result(timeout=0.3)
        finally:
            node.resume()
        self.assertEqual(future.result(timeout=10), 42)

    def test_zz_kill_then_restart(self):  # last: the others need every node's service
        victim = self.nodes[2]
        port = victim.port()
        victim.call(nf.remember, "key", "before")
        victim.kill()
        self.assertFalse(victim.alive)
        with self.assertRaises(NodeCrashedError) as caught:
            victim.call(nf.add, 1, 1)
        self.assertIn("node node-2 is not running", str(caught.exception))
        victim.restart()
        self.assertTrue(victim.alive)
        self.assertEqual(victim.call(nf.add, 1, 1), 2)
        self.assertIsNone(victim.call(nf.recall, "key"))
        self.assertEqual(victim.port(), port)
        self.assertEqual(victim.call(nf.serve_name), port)  # its service again
        self.assertClusterHealthy()

    @disttest.requires_real_cluster
    def test_nodes_are_processes(self):
        pids = {node.pid for node in self.nodes}
        self.assertEqual(len(pids), 3)
        self.assertNotIn(os.getpid(), pids)
        self.assertEqual(self.nodes[0].call(nf.identity)["pid"], self.nodes[0].pid)

    @disttest.requires_real_cluster
    def test_printed_output_is_in_the_log(self):
        self.nodes[0].call(nf.say, "hello from node-0")
        self.assertIn("hello from node-0", self.nodes[0].logs(tail=3))


class ApiAgain(disttest.DistributedTestCase):
    """Same requirement: gets the reset cluster of Api."""

    cluster_size = 3

    def test_reset_ran_on_reset_and_cleared_state(self):
        record(self)
        self.assertEqual(self.cluster.call_all(nf.recall, "key"), [None, None, None])
        # every node's service was shut down by its on_reset callback (node-2 twice:
        # killed and restarted; the restarted one served again)
        self.assertTrue(all(n >= 1 for n in self.cluster.call_all(nf.resets)))
        # ... so the app ports are free again for a new service
        ports = self.cluster.call_all(nf.serve_name)
        self.assertEqual(ports, [node.port() for node in self.nodes])
        self.assertEqual(self.nodes[2].call(nf.ask_peers)["node-0"], f"{self.cluster.id} node-0")
