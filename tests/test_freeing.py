"""The runner keeps no finished test, as unittest's own TestSuite does.

A suite whose tests keep large objects on ``self`` must cost under
``python -m disttest`` what it costs under ``python -m unittest``: each test
is freed when it ends, whether the suite runs as loaded (plain tests) or
reordered into cluster groups. The sample's last tests check, with weak
references, that every earlier test is gone.
"""
from __future__ import annotations

import unittest

from tests.test_runner_e2e import Sample


class FinishedTestsAreFreed(unittest.TestCase):
    def test_plain_suite_frees_each_test(self):
        sample = Sample(self.addCleanup, "freeing")
        run = sample.run("discover", "-s", "tests", "-t", ".", "-p", "test_plain.py")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 41, "status": "OK"}, run)

    def test_same_under_unittest(self):
        # The reference the runner is held to.
        sample = Sample(self.addCleanup, "freeing")
        run = sample.run("discover", "-s", "tests", "-t", ".", "-p", "test_plain.py",
                         module="unittest")
        self.assertEqual(run.returncode, 0, run)

    def test_reordered_cluster_suite_frees_each_test(self):
        sample = Sample(self.addCleanup, "freeing")
        run = sample.run("discover", "-s", "tests", "-t", ".")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 63, "status": "OK"}, run)

    def test_selected_suite_frees_each_test(self):
        # Selection by tag builds a new suite too.
        sample = Sample(self.addCleanup, "freeing")
        run = sample.run("discover", "-s", "tests", "-t", ".", "--only", "distributed")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 21, "status": "OK"}, run)


if __name__ == "__main__":
    unittest.main()
