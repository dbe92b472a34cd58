"""Errors of spawned jobs: logged on the node when they happen, reported with
the test that was running, and handles that know their node restarted.

A sample suite runs under ``python -m disttest`` with a JUnit report; this
test checks which of its tests errored and what the output and report say.
"""
from __future__ import annotations

import re
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


    def failing_job():
        raise ValueError("boom in job")


    def value(x):
        return x


    class Jobs(disttest.DistributedTestCase):
        cluster_size = 1

        def finished(self, handle):
            self.wait_until(lambda: not handle.running(), timeout=10)

        def test_a_unread_failure_errors_this_test(self):
            self.finished(self.nodes[0].spawn(failing_job))

        def test_b_a_read_failure_is_the_tests_business(self):
            node = self.nodes[0]
            handle = node.spawn(failing_job)
            with self.assertRaises(disttest.RemoteError):
                handle.result(timeout=10)
            log = node.logs()
            self.assertIn("spawned failing_job (job", log)
            self.assertIn('raise ValueError("boom in job")', log)

        def test_c_a_handle_from_before_a_restart(self):
            node = self.nodes[0]
            old = node.spawn(value, 1)
            self.assertEqual(old.result(timeout=10), 1)
            node.restart()
            new = node.spawn(value, 2)  # the new process numbers its jobs from 1 again
            with self.assertRaises(disttest.DisttestError) as raised:
                old.result(timeout=10)
            self.assertIn("earlier process", str(raised.exception))
            with self.assertRaises(disttest.DisttestError):
                old.running()
            self.assertEqual(new.result(timeout=10), 2)

        def test_d_passing(self):
            self.assertEqual(self.nodes[0].call(value, 3), 3)
''')


class SpawnedJobErrorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        (root / "test_jobs_sample.py").write_text(SAMPLE)
        cls.junit = root / "junit.xml"
        cls.done = support.run_python(
            ["-m", "disttest", "test_jobs_sample", "-v", "--junit-xml", str(cls.junit)],
            cwd=str(root), timeout=120)
        cls.output = cls.done.stdout + cls.done.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def outcome(self, name):
        match = re.search(rf"{name} \(.*\).* \.\.\. (\w+)", self.output)
        self.assertIsNotNone(match, self.output)
        return match.group(1)

    def test_an_unread_failure_is_an_error_of_the_test_that_ran(self):
        self.assertEqual(self.done.returncode, 1, self.output)
        self.assertEqual(self.outcome("test_a_unread_failure_errors_this_test"), "ERROR")
        block = self.output.split("ERROR: test_a_unread_failure_errors_this_test", 1)[1]
        block = block.split("-" * 70, 2)[1]
        self.assertIn("spawned failing_job (job 1) failed: boom in job", block)
        self.assertIn("ValueError on node node-0", block)
        self.assertIn('raise ValueError("boom in job")', block)  # the node's traceback

    def test_read_failures_and_restart_handles_pass(self):
        for name in ("test_b_a_read_failure_is_the_tests_business",
                     "test_c_a_handle_from_before_a_restart", "test_d_passing"):
            self.assertEqual(self.outcome(name), "ok", name)
        self.assertEqual(self.output.count("spawned failing_job (job"), 1, self.output)

    def test_the_junit_report_has_it_on_that_test(self):
        cases = {c.get("name"): c for c in ET.parse(self.junit).getroot().iter("testcase")}
        error = cases["test_a_unread_failure_errors_this_test"].find("error")
        self.assertIsNotNone(error)
        self.assertIn("boom in job", error.get("message", "") + (error.text or ""))
        for name in ("test_b_a_read_failure_is_the_tests_business", "test_d_passing"):
            self.assertIsNone(cases[name].find("error"), name)


if __name__ == "__main__":
    unittest.main()
