"""A failure on a node reads from the test's line: the node's traceback from
the user's code and what the node printed during the call, with no frames of
disttest's own -- on the console, in JUnit, and under pytest.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
import textwrap
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

from tests import support


def tearDownModule():
    support.shutdown_and_check()


SAMPLE = textwrap.dedent('''
    import disttest


    def fails():
        print("looking up the key", flush=True)
        return {}["missing"]


    def quiet():
        return 1


    class Remote(disttest.DistributedTestCase):
        cluster_size = 2

        def test_call(self):
            self.nodes[1].call(quiet)  # its output is not this call's
            self.nodes[0].call(fails)

        def test_call_all(self):
            self.cluster.call_all(fails)
''')


class RemoteErrorReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        (cls.root / "test_remote_sample.py").write_text(SAMPLE)
        cls.junit = cls.root / "junit.xml"
        cls.done = support.run_python(
            ["-m", "disttest", "test_remote_sample", "--junit-xml", str(cls.junit)],
            cwd=str(cls.root), timeout=120)
        cls.output = cls.done.stdout + cls.done.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def block(self, name):
        text = self.output.split(f"ERROR: {name} ", 1)[1]
        return text.split("-" * 70, 2)[1]

    def check(self, text, test_line):
        self.assertIn(test_line, text)
        self.assertNotIn("disttest/clusters", text)  # no frame of disttest's own
        self.assertNotIn("disttest/case.py", text)
        self.assertIn("RemoteError: KeyError on node node-0: 'missing'", text)
        self.assertIn('in fails\n    return {}["missing"]', text)  # the node's traceback
        self.assertIn("Output of node node-0 during the call:\nlooking up the key", text)

    def test_the_console_shows_the_node_side(self):
        self.assertEqual(self.done.returncode, 1, self.output)
        block = self.block("test_call")
        self.check(block, "self.nodes[0].call(fails)")
        # The traceback goes from the test's line straight to the error.
        # (Python 3.13 underlines the failing call with a line of ~ and ^.)
        self.assertRegex(block, r"self\.nodes\[0\]\.call\(fails\)\n(?: *[~^]+\n)?"
                                r"disttest\.errors\.RemoteError")
        self.check(self.block("test_call_all"), "self.cluster.call_all(fails)")

    def test_junit_has_the_same(self):
        cases = {c.get("name"): c for c in ET.parse(self.junit).getroot().iter("testcase")}
        error = cases["test_call"].find("error")
        self.check(error.text, "self.nodes[0].call(fails)")

    @unittest.skipUnless(importlib.util.find_spec("pytest"), "needs pytest")
    def test_pytest_shows_the_same(self):
        done = support.run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   "test_remote_sample.py::Remote::test_call"],
                                  cwd=str(self.root), timeout=120)
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, 1, output)
        self.assertNotIn("_receive", output)
        self.assertNotIn("disttest/clusters", output)
        self.assertIn("Output of node node-0 during the call:", output)
        self.assertIn("looking up the key", output)


if __name__ == "__main__":
    unittest.main()
