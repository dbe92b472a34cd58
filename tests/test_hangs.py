"""A hang explains itself: a progress line names the test and the node call it
waits on, and the timeout error shows the node's threads and its log.

A sample test calls a function that blocks forever on its node; the run has
a short ``call_timeout`` and ``slow_test_notice`` (from the environment), so
the test checks the output of a real hang in a few seconds.
"""
from __future__ import annotations

import re
import tempfile
import textwrap
import unittest
from pathlib import Path

from tests import support


def tearDownModule():
    support.shutdown_and_check()


SAMPLE = textwrap.dedent('''
    import threading

    import disttest


    def hang():
        print("taking the lock that nobody releases", flush=True)
        threading.Event().wait()


    class Hangs(disttest.DistributedTestCase):
        cluster_size = 2

        def test_a_call_that_never_returns(self):
            self.nodes[1].call(hang)
''')


class HangTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        (root / "test_hang_sample.py").write_text(SAMPLE)
        cls.done = support.run_python(
            ["-m", "disttest", "test_hang_sample", "-v"], cwd=str(root), timeout=120,
            env={"DISTTEST_CALL_TIMEOUT": "4", "DISTTEST_SLOW_TEST_NOTICE": "1.5"})
        cls.output = cls.done.stdout + cls.done.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_a_progress_line_names_the_test_and_the_call_it_waits_on(self):
        lines = re.findall(r"disttest: (\S+ still running.*)", self.output)
        self.assertTrue(lines, self.output)
        self.assertRegex(lines[0], r"^test_hang_sample\.Hangs\.test_a_call_that_never_returns "
                                   r"still running after \d+s; "
                                   r"waiting on node-1: hang \(for \d+s\)$")
        self.assertLess(len(lines), 4, self.output)  # one line per 1.5 s, not a flood

    def test_the_timeout_error_shows_the_nodes_threads_and_log(self):
        self.assertEqual(self.done.returncode, 1, self.output)
        block = self.output.split("ERROR: test_a_call_that_never_returns", 1)[1]
        self.assertIn("node node-1 did not answer hang within 4s", block)
        self.assertIn("--- thread 'disttest-conn (call hang)' (most recent call last):", block)
        self.assertIn("threading.Event().wait()", block)  # where it waits, on the node
        self.assertIn("the node's log ends with:", block)
        self.assertIn("taking the lock that nobody releases", block)
        self.assertNotIn("raise call_timeout", block)
        self.assertIn("read the stack of the thread running hang", block)


if __name__ == "__main__":
    unittest.main()
