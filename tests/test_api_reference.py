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
            "CallTimeoutError", "Cluster", "ClusterStartError",
            "ClusterTestHelper", "ConfigError", "Diagnosis", "DisttestError",
            "DistributedTestCase", "DistributedTestLoader", "DistributedTestResult",
            "DistributedTestRunner", "NetworkModeError", "Node", "NodeCrashedError",
            "PortRangeExhausted", "RemoteError", "SerializationError", "Spawned",
            "cluster", "cluster_size", "current_cluster", "distributed", "fresh_cluster",
            "main", "requires_real_cluster", "start_cluster", "tag",
            "this_node", "wait_until",
            "History", "HistoryFormatError", "Model", "Register", "CASRegister", "KVMap",
            "SetModel", "Counter", "FIFOQueue", "check_linearizable", "CheckResult",
            "assert_linearizable", "NonLinearizableError", "Nemesis"]))

    def test_tooling_names_are_pinned_and_documented(self):
        import disttest.tooling

        self.assertEqual(disttest.tooling.__all__, [
            "ClusterPool", "Config", "Event", "EventBus", "Requirement", "load_config"])
        for name in disttest.tooling.__all__:
            with self.subTest(name=name):
                self.assertIsNotNone(getattr(disttest.tooling, name).__doc__)

    def test_names_that_moved_to_tooling_still_resolve_with_a_warning(self):
        import disttest.tooling

        for name in ("ClusterPool", "Requirement", "Config", "load_config"):
            with self.subTest(name=name), self.assertWarnsRegex(
                    DeprecationWarning, f"use disttest.tooling.{name}"):
                self.assertIs(getattr(disttest, name), getattr(disttest.tooling, name))

    def test_every_exported_class_has_a_docstring_of_its_own(self):
        import disttest.tooling

        for module in (disttest, disttest.tooling):
            for name in module.__all__:
                value = getattr(module, name)
                if isinstance(value, type):
                    with self.subTest(name=name):
                        self.assertTrue((value.__dict__.get("__doc__") or "").strip())
                        self.assertFalse(value.__doc__.startswith(name + "("),
                                         "a generated dataclass signature is no docstring")

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


class ErrorFieldsTest(unittest.TestCase):
    def test_fields_are_declared_keyword_only_and_survive_pickling(self):
        import inspect
        import pickle

        for name in ("DisttestError", "ConfigError", "ClusterStartError", "NodeCrashedError",
                     "RemoteError", "PortRangeExhausted", "CallTimeoutError",
                     "SerializationError", "NetworkModeError"):
            cls = getattr(disttest, name)
            with self.subTest(name=name):
                params = inspect.signature(cls).parameters
                self.assertEqual([p for p in params if params[p].kind is params[p].KEYWORD_ONLY],
                                 ["kind", *cls.FIELDS])
                self.assertFalse(any(p.kind is p.VAR_KEYWORD for p in params.values()))
                with self.assertRaises(TypeError):
                    cls("problem", bogus=1)
                error = cls("problem", "cause", ["step"], node="node-1")
                copy = pickle.loads(pickle.dumps(error))
                self.assertEqual((type(copy), copy.fields, copy.diagnosis),
                                 (cls, error.fields, error.diagnosis))

    def test_remote_error_fields(self):
        error = disttest.RemoteError("boom", remote_type="ValueError", remote_traceback="tb",
                                     node="node-2", node_output="printed")
        self.assertEqual((error.remote_type, error.node, error.node_output),
                         ("ValueError", "node-2", "printed"))


class ConfigMistakesTest(unittest.TestCase):
    """Every configuration mistake raises ConfigError, naming what was wrong."""

    def test_an_empty_tag(self):
        with self.assertRaises(disttest.ConfigError) as cm:
            disttest.tag("")
        self.assertEqual((cm.exception.source, cm.exception.key, cm.exception.value),
                         ("disttest.tag()", "tag", ""))

    def test_an_unknown_start_cluster_option(self):
        with self.assertRaises(disttest.ConfigError) as cm:
            disttest.start_cluster(1, bogus=1)
        self.assertIn("start_cluster() got unknown cluster option(s) bogus", str(cm.exception))
        self.assertIn("node_env", cm.exception.allowed)

    def test_an_unknown_distributed_argument(self):
        with self.assertRaises(disttest.ConfigError) as cm:
            disttest.distributed(bogus=1)
        self.assertIn("disttest.distributed() got unknown argument(s) bogus", str(cm.exception))

    def test_distributed_on_something_else_than_a_test_case(self):
        with self.assertRaises(disttest.ConfigError):
            disttest.distributed(cluster_size=2)(object)


class ApiReferenceTest(unittest.TestCase):
    def test_docs_api_md_is_current(self):
        done = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)


if __name__ == "__main__":
    unittest.main()
