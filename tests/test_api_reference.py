"""The public API: its names are a contract, and docs/api.md is generated from it."""
import subprocess
import sys
import unittest
from pathlib import Path

import disttest

ROOT = Path(__file__).resolve().parent.parent


class ExportsTest(unittest.TestCase):
    def test_exported_names_are_pinned(self):
        self.assertEqual(sorted(disttest.__all__), sorted([
            "CallTimeoutError", "Cluster", "ClusterPool", "ClusterStartError",
            "ClusterTestHelper", "Config", "ConfigError", "Diagnosis", "DisttestError",
            "DistributedTestCase", "DistributedTestLoader", "DistributedTestResult",
            "DistributedTestRunner", "NetworkModeError", "Node", "NodeCrashedError",
            "PortRangeExhausted", "RemoteError", "Requirement", "SerializationError",
            "cluster", "cluster_size", "current_cluster", "distributed", "fresh_cluster",
            "load_config", "main", "requires_real_cluster", "start_cluster", "tag",
            "this_node", "wait_until",
            "History", "HistoryFormatError", "Model", "Register", "CASRegister", "KVMap",
            "SetModel", "Counter", "FIFOQueue", "check_linearizable", "CheckResult",
            "assert_linearizable", "NonLinearizableError", "Nemesis"]))

    def test_every_exported_name_resolves(self):
        for name in disttest.__all__:
            with self.subTest(name=name):
                self.assertIsNotNone(getattr(disttest, name))

    def test_function_names_are_not_shadowed_by_modules(self):
        # disttest.cluster() and disttest.main() are functions even after every
        # submodule is imported (the subpackage is disttest.clusters).
        import disttest.clusters.pool  # noqa: F401
        import disttest.program  # noqa: F401

        self.assertTrue(callable(disttest.cluster))
        self.assertTrue(callable(disttest.main))


class ApiReferenceTest(unittest.TestCase):
    def test_docs_api_md_is_current(self):
        done = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)


if __name__ == "__main__":
    unittest.main()
