"""Each node works in a directory of its own, with its own TMPDIR, under the
cluster's directory; the project stays importable; a reset empties it. Ports
a node listens on without declaring them are named in --cluster-debug and
the JSON report.
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


HELPER = "VALUE = 'importable from the project'\n"

SAMPLE = textwrap.dedent('''
    import json
    import os
    import socket
    import tempfile

    import disttest
    from disttest import this_node


    def where():
        import helper  # a module of the project, next to this file

        with open("marker.txt", "w") as f:
            f.write(this_node.name)
        return {"cwd": os.getcwd(), "dir": this_node.dir, "tmp": tempfile.gettempdir(),
                "helper": helper.VALUE, "files": sorted(os.listdir("."))}


    def listing():
        return sorted(os.listdir("."))


    def listen_undeclared():
        server = socket.create_server((this_node.host, 0))
        this_node.on_reset(server.close)
        return server.getsockname()[1]


    class A(disttest.DistributedTestCase):
        cluster_size = 2

        def test_own_directories(self):
            a, b = self.nodes
            seen_a, seen_b = a.call(where), b.call(where)
            self.assertEqual(seen_a["cwd"], seen_a["dir"])
            self.assertEqual(seen_a["dir"], str(a.dir))
            self.assertNotEqual(seen_a["dir"], seen_b["dir"])
            self.assertEqual(seen_a["tmp"], os.path.join(seen_a["dir"], "tmp"))
            self.assertEqual(seen_a["helper"], "importable from the project")
            self.assertEqual(os.path.dirname(seen_a["dir"]), os.path.dirname(seen_b["dir"]))
            self.assertNotEqual(os.getcwd(), seen_a["dir"])  # the test's is its own
            # The directory is the node's disk: it outlives a restart.
            a.restart()
            self.assertIn("marker.txt", a.call(listing))

        def test_undeclared_port(self):
            port = self.nodes[1].call(listen_undeclared)
            with open(os.environ["SAMPLE_OUT"], "w") as f:
                json.dump({"port": port}, f)


    class B(disttest.DistributedTestCase):
        cluster_size = 2

        def test_a_reset_emptied_it(self):
            self.assertEqual([n.call(listing) for n in self.nodes], [["tmp"], ["tmp"]])
''')


class NodeDirsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        (root / "helper.py").write_text(HELPER)
        (root / "test_dirs_sample.py").write_text(SAMPLE)
        cls.out, cls.report = root / "port.json", root / "report.json"
        cls.done = support.run_python(
            ["-m", "disttest", "test_dirs_sample", "-v", "--cluster-debug",
             "--json-report", str(cls.report)],
            cwd=str(root), env={"SAMPLE_OUT": str(cls.out)}, timeout=120)
        cls.output = cls.done.stdout + cls.done.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_the_sample_passes(self):
        self.assertEqual(self.done.returncode, 0, self.output)
        self.assertIn("Ran 3 tests", self.output)
        # B was lent A's nodes after a reset, so it saw the reset empty them.
        self.assertEqual(json.loads(self.report.read_text())["cluster_starts"], 1)

    def test_undeclared_ports_are_reported(self):
        port = json.loads(self.out.read_text())["port"]
        report = json.loads(self.report.read_text())
        self.assertIn({"class": "test_dirs_sample.A", "cluster": report["clusters"][0]["id"],
                       "node": "node-1", "ports": [port]}, report["undeclared_ports"])
        self.assertIn(f"test_dirs_sample.A: node-1 of cluster {report['clusters'][0]['id']} "
                      f"listened on undeclared port(s) {port}", self.output)
        # Declared ports and disttest's own are not listed.
        self.assertEqual([e["node"] for e in report["undeclared_ports"]], ["node-1"])


if __name__ == "__main__":
    unittest.main()
