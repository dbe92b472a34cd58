"""``disttest.ClusterTestHelper`` in plain ``unittest.TestCase`` classes.

The ``manual`` sample starts its clusters by hand (from ``setUpClass`` through
a helper object, and from ``setUp`` with the helper as a mixin). It passes
under ``python -m disttest``, ``python -m unittest`` and pytest and leaves no
node behind under any of them; under ``python -m disttest`` the manual
clusters are in the summary and the JSON report, and tag selection treats
the module as cluster tests.
"""
from __future__ import annotations

import importlib.util
import re
import textwrap
import time
import unittest
from pathlib import Path

import disttest
from tests import support
from tests.samples_lifecycle.harness import (Project, Run, agents_since, assert_left_nothing,
                                             report_pids)

MANUAL_TESTS = {"test_every_node_answers", "test_wait_for_cluster"}


class ManualHelper(unittest.TestCase):

    def run_sample(self, *args, module: str = "disttest", report: bool = False) -> Run:
        self.project = Project(self, "manual")
        return self.project.run(*args, module=module, report=report)

    def clusters(self) -> dict[str, list[int]]:
        """Cluster id -> node pids, as the sample's tests saw them."""
        seen = {}
        for line in self.project.marker_lines():
            words = line.split()
            if words[0] == "cluster":
                seen[words[1]] = [int(pid) for pid in words[2:]]
        return seen

    def assert_ran_clean(self, run: Run) -> dict[str, list[int]]:
        clusters = self.clusters()
        self.assertEqual(sorted(len(pids) for pids in clusters.values()), [2, 3], run)
        self.assertIn("plain", self.project.marker_lines())
        assert_left_nothing(self, run, [pid for pids in clusters.values() for pid in pids],
                            cluster_ids=clusters)
        return clusters

    def test_under_disttest(self):
        run = self.run_sample("-v", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stderr, r"(?m)^Ran 3 tests in ")
        clusters = self.assert_ran_clean(run)
        # The manual clusters are accounted for like any other.
        report = run.report
        self.assertEqual(report["cluster_starts"], 2)
        self.assertEqual(report["nodes_started"], 5)
        self.assertEqual({c["id"]: c["size"] for c in report["clusters"]},
                         {cid: len(pids) for cid, pids in clusters.items()})
        for cluster in report["clusters"]:
            self.assertEqual(sorted(report_pid for node in cluster["nodes"]
                                    for report_pid in node["pids"]),
                             sorted(clusters[cluster["id"]]))
        summary = run.stderr[run.stderr.index("Cluster usage"):]
        self.assertIn("clusters started: 2 (5 node(s))", summary)
        for cluster_id, pids in clusters.items():
            self.assertRegex(summary, rf"(?m)^  {cluster_id} +{len(pids)} ")

    def test_under_unittest(self):
        run = self.run_sample("-v", module="unittest")
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stderr, r"(?m)^Ran 3 tests in .*\n\nOK$")
        self.assertNotIn("Cluster usage", run.stderr)  # unittest's output, nothing added
        self.assert_ran_clean(run)

    @unittest.skipUnless(importlib.util.find_spec("pytest"), "pytest is not installed")
    def test_under_pytest(self):
        run = self.run_sample("-q", "-p", "no:cacheprovider", module="pytest")
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stdout, r"\b3 passed\b")
        self.assert_ran_clean(run)

    def test_exclude_distributed_leaves_the_helper_tests_out(self):
        run = self.run_sample("-v", "--exclude", "distributed")
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stderr, r"(?m)^Ran 1 test in ")
        self.assertIn("test_plain", run.stderr)
        for name in MANUAL_TESTS:
            self.assertNotIn(name, run.stderr)
        self.assertEqual(self.project.marker_lines(), ["plain"])
        self.assertEqual(agents_since(run.started), [])

    def test_only_distributed_runs_just_the_helper_tests(self):
        run = self.run_sample("-v", "--only", "distributed")
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stderr, r"(?m)^Ran 2 tests in ")
        self.assertEqual(set(re.findall(r"^(test_\w+) \(", run.stderr, re.M)), MANUAL_TESTS)
        self.assertNotIn("plain", self.project.marker_lines())
        self.assertEqual(len(self.clusters()), 2)


class MigrationGuide(unittest.TestCase):
    """Every test class of docs/migration.md runs, against the guide's toy service."""

    # Names the guide's fragments take from the text around them.
    PREAMBLE = textwrap.dedent('''\
        import unittest

        import disttest
        from disttest import this_node

        import myservice


        class ProjectTestCase(unittest.TestCase):
            pass


        def start_server():
            server = myservice.Server(this_node.address("app"), this_node.peers("app").values())
            server.start()
            this_node.on_reset(server.stop)

        ''')

    def test_the_guides_examples_pass(self):
        text = (Path(support.REPO) / "docs" / "migration.md").read_text()
        blocks = [textwrap.dedent(b) for b in re.findall(r"^ *```py\n(.*?)^ *```", text, re.S | re.M)
                  if "TestCase" in b or "@disttest.distributed" in b]
        self.assertGreaterEqual(len(blocks), 7)
        project = Project(self, "migration")
        (project.root / "tests").mkdir()
        (project.root / "tests" / "__init__.py").write_text("")
        for number, block in enumerate(blocks, 1):
            (project.root / "tests" / f"test_guide_{number}.py").write_text(
                self.PREAMBLE + "\n" + block)
        tests = sum(len(re.findall(r"^    def test_", b, re.M)) for b in blocks)
        run = project.run("-v", report=True, timeout=120)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.report["tests_run"], tests, run)
        self.assertEqual(run.report["leaks"], [], run)
        assert_left_nothing(self, run, report_pids(run.report))


class HelperFromSetUpClass(unittest.TestCase):

    def test_calling_it_on_the_class_says_what_to_do_and_starts_nothing(self):
        # A mixin's setUpClass has no instance: cls.start_test_cluster(2) passes
        # 2 as self. That must not start a cluster it cannot record.
        class Mixed(disttest.ClusterTestHelper, unittest.TestCase):
            pass

        started = time.time()
        with self.assertRaises(disttest.DisttestError) as caught:
            Mixed.start_test_cluster(2)
        self.assertIn("called on a class", str(caught.exception))
        self.assertIn("cls.helper = disttest.ClusterTestHelper()",
                      caught.exception.diagnosis.render())
        self.assertEqual(agents_since(started), [])


if __name__ == "__main__":
    unittest.main()
