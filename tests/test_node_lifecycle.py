"""setUpNode/tearDownNode: a service on every node, on every process it has.

A sample suite starts a real TCP service on each node through ``setUpNode``
and checks it is there after a restart, a kill and restart, and on the nodes
a method's larger size adds; the sample records each hook call as a JSON line,
and this test checks their order.
"""
from __future__ import annotations

import json
import tempfile
import textwrap
import unittest
from pathlib import Path

from tests import support


def tearDownModule():
    support.shutdown_and_check()


SAMPLE = textwrap.dedent('''
    import json
    import os
    import socket
    import threading

    import disttest
    from disttest import this_node


    def record(**data):
        with open(os.environ["SAMPLE_OUT"], "a") as f:
            f.write(json.dumps(data) + "\\n")


    def serve():
        """An echo service on this node's "app" port, stopped by stop() or a reset."""
        server = socket.create_server((this_node.host, this_node.port("app")))
        server.settimeout(0.1)

        def loop():
            while not this_node.stopping.is_set() and not this_node.state.get("stop"):
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    continue
                with conn:
                    conn.sendall(this_node.name.encode() + b":" + conn.recv(64))
            server.close()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        this_node.state["thread"] = thread
        this_node.on_reset(thread.join)


    def stop():
        this_node.state["stop"] = True
        this_node.state["thread"].join()


    def echo(node):
        with socket.create_connection(node.address("app"), timeout=5) as s:
            s.sendall(b"ping")
            return s.recv(64).decode()


    class Lifecycle(disttest.DistributedTestCase):
        cluster_size = 2

        @classmethod
        def setUpNode(cls, node):
            record(hook="setUpNode", node=node.name, pid=node.pid)
            node.call(serve)

        @classmethod
        def tearDownNode(cls, node):
            record(hook="tearDownNode", node=node.name, pid=node.pid)
            node.call(stop)

        @classmethod
        def setUpCluster(cls):
            record(hook="setUpCluster", nodes=[n.name for n in cls.nodes],
                   first=cls.nodes[0].name)

        @classmethod
        def tearDownCluster(cls):
            record(hook="tearDownCluster")

        def test_1_service_on_every_node(self):
            self.assertEqual([echo(n) for n in self.nodes], ["node-0:ping", "node-1:ping"])

        def test_2_restart_keeps_the_service(self):
            node = self.nodes[1]
            node.restart()
            self.assertEqual(echo(node), "node-1:ping")

        def test_3_kill_then_restart(self):
            node = self.nodes[0]
            node.kill()
            node.restart()
            self.assertEqual(echo(node), "node-0:ping")

        @disttest.cluster_size(4)
        def test_4_added_nodes_have_it(self):
            self.assertEqual([echo(n) for n in self.nodes],
                             [f"node-{i}:ping" for i in range(4)])


    class NodeSetupFails(disttest.DistributedTestCase):
        cluster_size = 2

        @classmethod
        def setUpNode(cls, node):
            if node.index == 1:
                raise RuntimeError("service would not start on " + node.name)

        def test_never_runs(self):
            pass
''')


class NodeLifecycleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        (root / "test_lifecycle_sample.py").write_text(SAMPLE)
        out = root / "records.jsonl"
        cls.done = support.run_python(
            ["-m", "disttest", "test_lifecycle_sample", "-v"], cwd=str(root),
            env={"SAMPLE_OUT": str(out)}, timeout=120)
        cls.records = [json.loads(line) for line in out.read_text().splitlines()]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def lifecycle_records(self):
        return [r for r in self.records if "pid" in r or r["hook"].endswith("Cluster")]

    def test_the_service_tests_pass(self):
        output = self.done.stdout + self.done.stderr
        for name in ("test_1_service_on_every_node", "test_2_restart_keeps_the_service",
                     "test_3_kill_then_restart", "test_4_added_nodes_have_it"):
            self.assertRegex(output, rf"{name} \(.*\).* \.\.\. ok", output)

    def test_hooks_run_in_order(self):
        hooks = [(r["hook"], r.get("node")) for r in self.records]
        # The class may use 4 nodes (one method asks for 4): each is set up
        # before setUpCluster, which sees the class's own 2 as cls.nodes.
        self.assertEqual(hooks[:5], [("setUpNode", f"node-{i}") for i in range(4)]
                         + [("setUpCluster", None)])
        self.assertEqual(self.records[4]["nodes"], ["node-0", "node-1"])
        self.assertEqual(self.records[4]["first"], "node-0")
        # restart() of a running node: tearDownNode on the old process, then
        # setUpNode on the new one.
        restart = hooks[5:7]
        self.assertEqual(restart, [("tearDownNode", "node-1"), ("setUpNode", "node-1")])
        self.assertNotEqual(self.records[5]["pid"], self.records[6]["pid"])
        # kill() then restart(): the killed process gets no tearDownNode.
        self.assertEqual(hooks[7], ("setUpNode", "node-0"))
        # The end of the class: tearDownCluster, then every node, last first.
        self.assertEqual(hooks[8:13], [("tearDownCluster", None)]
                         + [("tearDownNode", f"node-{i}") for i in (3, 2, 1, 0)])

    def test_a_failing_setUpNode_fails_the_class_naming_the_hook(self):
        output = self.done.stdout + self.done.stderr
        self.assertNotEqual(self.done.returncode, 0)
        self.assertIn("setUpNode of test_lifecycle_sample.NodeSetupFails failed: "
                      "RuntimeError: service would not start on node-1", output)
        self.assertNotIn("test_never_runs (test_lifecycle_sample.NodeSetupFails", output)


if __name__ == "__main__":
    unittest.main()
