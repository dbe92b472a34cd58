"""DistributedTestCase under foreign runners: ``python -m unittest`` and pytest.

Each test writes a small sample test module into a temp dir and runs it in a
subprocess. The sample records what it saw (cluster ids, node pids, sizes,
messages) as JSON lines in a file, which the test then checks.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import textwrap
import unittest
from pathlib import Path

from tests import support


def tearDownModule():
    support.shutdown_and_check()


SAMPLE = textwrap.dedent('''
    """A sample suite: the way a user writes disttest tests."""
    import json
    import os
    import unittest

    import disttest
    from disttest import this_node


    def record(**data):
        data["controller"] = os.getpid()
        with open(os.environ["SAMPLE_OUT"], "a") as f:
            f.write(json.dumps(data) + "\\n")


    def node_name():
        return this_node.name


    def node_env(name):
        return os.environ.get(name)


    class Base(disttest.DistributedTestCase):
        cluster_size = 2


    class SharedA(Base):
        @classmethod
        def setUpCluster(cls):
            record(event="setUpCluster", cls="SharedA", cluster=cls.cluster.id,
                   pids=[n.pid for n in cls.cluster])

        def test_1_nodes_answer(self):
            self.assertEqual([n.call(node_name) for n in self.nodes], ["node-0", "node-1"])

        def test_2_size(self):
            self.assertEqual(len(self.nodes), 2)

        def test_3_cluster_attribute(self):
            self.assertIs(self.cluster, type(self).cluster)


    class SharedB(Base):
        @classmethod
        def setUpCluster(cls):
            record(event="setUpCluster", cls="SharedB", cluster=cls.cluster.id,
                   pids=[n.pid for n in cls.cluster])

        def test_nodes(self):
            self.assertEqual(len(self.nodes), 2)


    class Sizes(Base):
        @classmethod
        def setUpCluster(cls):
            record(event="setUpCluster", cls="Sizes", cluster=cls.cluster.id,
                   pids=[n.pid for n in cls.cluster])

        def test_class_size(self):
            self.assertEqual(len(self.nodes), 2)

        @disttest.cluster_size(3)
        def test_method_size(self):
            record(event="method_size", nodes=[n.name for n in self.nodes],
                   pids=[n.pid for n in self.nodes], cluster=self.cluster.id)
            self.assertEqual(len(self.nodes), 3)
            self.assertEqual([n.call(node_name) for n in self.nodes],
                             ["node-0", "node-1", "node-2"])

        def test_with_cluster_size_yields_nodes(self):
            with self.with_cluster_size(3) as nodes:
                self.assertEqual([n.name for n in nodes], ["node-0", "node-1", "node-2"])

        def test_with_cluster_size_skips(self):
            with self.with_cluster_size(7):
                self.fail("with_cluster_size(7) should have skipped")


    class Helpers(Base):
        def test_wait_until_returns_the_true_value(self):
            calls = []

            def third_time():
                calls.append(1)
                return len(calls) >= 3 and "ready"

            self.assertEqual(self.wait_until(third_time, timeout=5, interval=0.01), "ready")
            self.assertEqual(len(calls), 3)

        def test_wait_until_failure_messages(self):
            with self.assertRaises(AssertionError) as cm:
                self.wait_until(lambda: [], timeout=0.2, interval=0.05,
                                message="the replica never caught up")
            record(event="wait_until", message=str(cm.exception))

            def broken():
                raise KeyError("no leader yet")

            with self.assertRaises(AssertionError) as cm:
                self.wait_until(broken, timeout=0.1, interval=0.02)
            record(event="wait_until_error", message=str(cm.exception))

        def test_assert_cluster_healthy(self):
            self.assertClusterHealthy()
            victim = self.nodes[1]
            victim.kill()
            try:
                with self.assertRaises(AssertionError) as cm:
                    self.assertClusterHealthy()
                record(event="unhealthy", message=str(cm.exception))
            finally:
                victim.restart()
            self.assertClusterHealthy()


    class OtherEnv(disttest.DistributedTestCase):
        cluster_size = 1
        node_env = {"SAMPLE_MODE": "blue"}

        @classmethod
        def setUpCluster(cls):
            record(event="setUpCluster", cls="OtherEnv", cluster=cls.cluster.id,
                   pids=[n.pid for n in cls.cluster])

        def test_env_reaches_the_node(self):
            self.assertEqual(self.nodes[0].call(node_env, "SAMPLE_MODE"), "blue")


    @disttest.distributed(cluster_size=2)
    class PlainDecorated(unittest.TestCase):
        def test_has_a_cluster(self):
            self.assertIsInstance(self, unittest.TestCase)
            self.assertEqual(len(self.nodes), 2)
            self.assertEqual(self.cluster[1].call(node_name), "node-1")
            record(event="decorated", cluster=self.cluster.id)
    ''')

BAD_SAMPLE = textwrap.dedent('''
    """Declarations that are wrong, next to one that is right."""
    import json
    import os
    import unittest

    import disttest


    def bad(name, **attrs):
        def test_never_runs(self):
            raise AssertionError("a class with a bad declaration must not run its tests")
        attrs["test_never_runs"] = test_never_runs
        return type(name, (disttest.DistributedTestCase,), attrs)


    BadZero = bad("BadZero", cluster_size=0)
    BadNegative = bad("BadNegative", cluster_size=-1)
    BadWord = bad("BadWord", cluster_size="three")
    BadTooBig = bad("BadTooBig", cluster_size=5)
    BadPorts = bad("BadPorts", node_ports="app")
    BadEnv = bad("BadEnv", node_env={"A": 1})


    class Good(disttest.DistributedTestCase):
        cluster_size = 1

        def test_runs(self):
            with open(os.environ["SAMPLE_OUT"], "a") as f:
                f.write(json.dumps({"event": "good", "controller": os.getpid(),
                                    "cluster": self.cluster.id}) + "\\n")
    ''')

# class -> (attribute, the bad value as repr, words of what is allowed)
BAD = {
    "BadZero": ("cluster_size", "0", "a whole number of nodes from 1 to 4 (max_cluster_size)"),
    "BadNegative": ("cluster_size", "-1", "a whole number of nodes from 1 to 4"),
    "BadWord": ("cluster_size", "'three'", "a whole number of nodes from 1 to 4"),
    "BadTooBig": ("cluster_size", "5", "a whole number of nodes from 1 to 4"),
    "BadPorts": ("node_ports", "'app'", 'a tuple of port names such as ("app", "admin")'),
    "BadEnv": ("node_env", "{'A': 1}", "a mapping of environment variable names to strings"),
}


class SampleRun:
    """A sample module in a temp dir, run by a runner in a subprocess."""

    def __init__(self, add_cleanup, name: str, source: str) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="disttest-tests-sample-")
        add_cleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        self.name = name
        (self.dir / f"{name}.py").write_text(source)
        self.out = self.dir / "records.jsonl"

    def run(self, *args: str, env: dict | None = None):
        if self.out.exists():
            self.out.unlink()
        env = {"SAMPLE_OUT": str(self.out), "DISTTEST_MAX_CLUSTER_SIZE": "4", **(env or {})}
        result = support.run_python(list(args), cwd=str(self.dir), env=env, timeout=120)
        self.output = result.stdout + result.stderr
        self.records = ([json.loads(line) for line in self.out.read_text().splitlines()]
                        if self.out.exists() else [])
        return result

    def events(self, kind: str) -> list[dict]:
        return [r for r in self.records if r["event"] == kind]

    def assertNothingLeft(self, testcase: unittest.TestCase) -> None:
        """No node, port lock or temp dir of the finished run is left."""
        controllers = {r["controller"] for r in self.records}
        ids = {r["cluster"] for r in self.records if "cluster" in r}
        testcase.assertTrue(controllers and ids, self.output)
        for pid in controllers:
            support.assert_no_leaks(testcase, pid=pid, cluster_ids=ids)


class UnittestRunnerTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        # One run, many checks: each test below reads a part of it.
        cls.sample = SampleRun(cls.addClassCleanup, "test_sample", SAMPLE)
        cls.result = cls.sample.run("-m", "unittest", "-v", "test_sample")

    def setUp(self):
        self.assertEqual(self.result.returncode, 0, self.sample.output)

    def test_run_passes_with_the_expected_counts(self):
        self.assertRegex(self.sample.output, r"Ran 13 tests in")
        self.assertIn("OK (skipped=1)", self.sample.output)

    def test_classes_with_the_same_needs_share_one_cluster(self):
        setups = {r["cls"]: r for r in self.sample.events("setUpCluster")}
        self.assertEqual(setups["SharedA"]["cluster"], setups["SharedB"]["cluster"])
        self.assertEqual(setups["SharedA"]["pids"], setups["SharedB"]["pids"])
        # Sizes needs 3 nodes (one method asks for 3): the same cluster, grown;
        # the class itself still sees its own 2.
        self.assertEqual(setups["Sizes"]["cluster"], setups["SharedA"]["cluster"])
        self.assertEqual(setups["Sizes"]["pids"], setups["SharedA"]["pids"])
        (method,) = self.sample.events("method_size")
        self.assertEqual(method["cluster"], setups["SharedA"]["cluster"])
        self.assertEqual(method["pids"][:2], setups["SharedA"]["pids"])
        self.assertEqual(len(set(method["pids"])), 3)

    def test_a_different_node_env_gets_its_own_cluster(self):
        setups = {r["cls"]: r for r in self.sample.events("setUpCluster")}
        self.assertNotEqual(setups["OtherEnv"]["cluster"], setups["SharedA"]["cluster"])
        self.assertRegex(self.sample.output, r"test_env_reaches_the_node .*\.\.\. ok")

    def test_setUpCluster_runs_once_per_class(self):
        classes = [r["cls"] for r in self.sample.events("setUpCluster")]
        self.assertEqual(sorted(classes), ["OtherEnv", "SharedA", "SharedB", "Sizes"])

    def test_method_size_gets_that_many_nodes(self):
        (record,) = self.sample.events("method_size")
        self.assertEqual(record["nodes"], ["node-0", "node-1", "node-2"])
        self.assertRegex(self.sample.output, r"test_class_size .*\.\.\. ok")

    def test_with_cluster_size_skips_when_the_cluster_is_too_small(self):
        self.assertRegex(self.sample.output, r"test_with_cluster_size_skips .*\.\.\. skipped "
                                             r"'needs 7 nodes, the cluster has 3'")
        self.assertRegex(self.sample.output, r"test_with_cluster_size_yields_nodes .*\.\.\. ok")

    def test_wait_until_messages(self):
        (timeout,) = self.sample.events("wait_until")
        self.assertIn("the replica never caught up within 0.2s (last value: [])",
                      timeout["message"])
        (error,) = self.sample.events("wait_until_error")
        self.assertIn("never became true within 0.1s", error["message"])
        self.assertIn("last error: KeyError: 'no leader yet'", error["message"])

    def test_assertClusterHealthy_names_the_dead_node(self):
        (record,) = self.sample.events("unhealthy")
        self.assertIn("cluster is not healthy: node-1:", record["message"])
        self.assertIn("not running", record["message"])

    def test_distributed_decorator_on_a_plain_testcase(self):
        (record,) = self.sample.events("decorated")
        self.assertTrue(record["cluster"])
        self.assertRegex(self.sample.output, r"test_has_a_cluster .*\.\.\. ok")

    def test_nothing_is_left_behind(self):
        self.sample.assertNothingLeft(self)


class BadDeclarationTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.sample = SampleRun(cls.addClassCleanup, "test_bad_sample", BAD_SAMPLE)
        cls.result = cls.sample.run("-m", "unittest", "-v", "test_bad_sample")

    def test_each_bad_class_errors_naming_class_attribute_value_and_allowed(self):
        output = self.sample.output
        self.assertEqual(self.result.returncode, 1, output)
        for name, (attribute, value, allowed) in BAD.items():
            with self.subTest(cls=name):
                self.assertIn(f"ERROR: setUpClass (test_bad_sample.{name})", output)
                self.assertIn(f"test class test_bad_sample.{name}: {attribute} = {value} is "
                              f"not allowed; {attribute} must be {allowed}", output)
        self.assertIn("FAILED (errors=6)", output)
        self.assertNotIn("must not run its tests", output)

    def test_the_run_goes_on_with_the_other_classes(self):
        self.assertRegex(self.sample.output, r"test_runs \(test_bad_sample\.Good[^)]*\) \.\.\. ok")
        self.assertEqual(len(self.sample.events("good")), 1)
        self.sample.assertNothingLeft(self)

    def test_no_traceback_lines_from_disttest_itself(self):
        # The diagnosis says everything; disttest's frames would only bury it.
        self.assertEqual(self.sample.output.count("disttest.errors.ConfigError: test class"), 6)
        frames = re.findall(r'File "([^"]+)"', self.sample.output)
        package = os.path.join(support.REPO, "disttest") + os.sep
        self.assertEqual([f for f in frames if f.startswith(package)], [])


class PytestRunnerTests(unittest.TestCase):

    def test_the_same_sample_passes_under_pytest(self):
        sample = SampleRun(self.addCleanup, "test_sample", SAMPLE)
        result = sample.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sample.py")
        self.assertEqual(result.returncode, 0, sample.output)
        self.assertRegex(sample.output, r"\b12 passed, 1 skipped\b")
        setups = {r["cls"]: r for r in sample.events("setUpCluster")}
        self.assertEqual(sorted(setups), ["OtherEnv", "SharedA", "SharedB", "Sizes"])
        self.assertEqual(len(sample.events("setUpCluster")), 4, "setUpCluster once per class")
        self.assertEqual(setups["SharedA"]["cluster"], setups["SharedB"]["cluster"])
        self.assertEqual(setups["SharedA"]["pids"], setups["SharedB"]["pids"])
        sample.assertNothingLeft(self)


if __name__ == "__main__":
    unittest.main()
