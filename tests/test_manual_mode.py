"""auto_cluster = false: cluster tests are skipped with one reason, whichever
runner runs them (python -m disttest plans them out; under python -m unittest
each class finds out when it asks for its cluster)."""
from __future__ import annotations

import unittest

from disttest.config import Config
from disttest.session import skip_reason
from tests import support
from tests.test_runner_e2e import Sample


def tearDownModule():
    support.shutdown_and_check()


class ManualModeTests(unittest.TestCase):

    def test_the_same_skip_reason_under_disttest_and_under_unittest(self):
        reason = skip_reason(Config(auto_cluster=False))
        self.assertIn("auto_cluster = false (manual mode)", reason)
        sample = Sample(self.addCleanup, "manualmode")
        for module in ("disttest", "unittest"):
            with self.subTest(runner=module):
                run = sample.run("-v", "tests.test_one", module=module,
                                 env={"DISTTEST_AUTO_CLUSTER": "false"})
                self.assertEqual(run.returncode, 0, run)
                self.assertIn(f"skipped {reason!r}", run.stderr, run)
                self.assertEqual(run.agents, [], "no node was started")


if __name__ == "__main__":
    unittest.main()
