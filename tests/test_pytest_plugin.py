"""The pytest plugin, end to end: sample projects under pytest, compared with
the same projects under ``python -m disttest``.

pytest runs in a subprocess with ``-p disttest.pytest_plugin`` (a source
checkout has no entry points), and once with the plugin found through its
``pytest11`` entry point as an installed disttest would declare it.
"""
from __future__ import annotations

import configparser
import importlib.util
import json
import re
import signal
import tempfile
import textwrap
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

from tests import support
from tests.samples_lifecycle.harness import Project
from tests.test_coverage import hide_outer_coverage, marked_lines, restore_outer_coverage
from tests.test_runner_e2e import Sample

HAVE_PYTEST = importlib.util.find_spec("pytest") is not None
HAVE_XDIST = importlib.util.find_spec("xdist") is not None
HAVE_PYTEST_COV = importlib.util.find_spec("pytest_cov") is not None
PLUGIN = ("-p", "disttest.pytest_plugin", "-p", "no:cacheprovider")
STARTS = re.compile(r"clusters started: (\d+) \((\d+) node")


def setUpModule():
    hide_outer_coverage()  # the pytest-cov run measures the sample only


def tearDownModule():
    restore_outer_coverage()
    support.shutdown_and_check()


def cluster_starts(output: str) -> int:
    return sum(int(n) for n, _ in STARTS.findall(output))


def pytest_outcomes(path: Path) -> dict[str, str]:
    """``{test id: outcome}`` from pytest's JUnit XML, ids as unittest spells them."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(
            kinds[0] if kinds else "", "passed")
        outcomes[f"{case.get('classname')}.{case.get('name')}"] = outcome
    return outcomes


def disttest_outcomes(report: dict) -> dict[str, str]:
    return {test["id"]: test["outcome"] for test in report["tests"]}


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class SameRunTests(unittest.TestCase):
    """The mixed sample (plain and cluster classes, sizes 2-5, a method size, a
    fresh class, node_env, a module with setUpModule, tags) both ways."""

    @classmethod
    def setUpClass(cls):
        cls.sample = Sample(cls.addClassCleanup, "mixed")
        cls.unittest_run = cls.sample.run("discover", "-s", "tests", "-t", ".", report=True)
        cls.unittest_log = cls.sample.read_lines("log.jsonl")
        junit = cls.sample.path("pytest.xml")
        cls.pytest_run = cls.sample.run(*PLUGIN, "tests", f"--junitxml={junit}",
                                        module="pytest")
        cls.pytest_log = cls.sample.read_lines("log.jsonl")
        cls.pytest_markers = cls.sample.read_lines("markers.txt")

    def test_both_pass(self):
        self.assertEqual(self.unittest_run.returncode, 0, self.unittest_run)
        self.assertEqual(self.pytest_run.returncode, 0, self.pytest_run)

    def test_the_same_outcomes(self):
        expected = disttest_outcomes(self.unittest_run.report)
        self.assertEqual(len(expected), 15)
        self.assertEqual(pytest_outcomes(self.sample.path("pytest.xml")), expected)

    def test_the_same_number_of_cluster_starts(self):
        self.assertEqual(self.unittest_run.report["cluster_starts"], 3)
        self.assertEqual(cluster_starts(self.unittest_run.stderr), 3)
        self.assertEqual(cluster_starts(self.pytest_run.stdout), 3, self.pytest_run)
        self.assertIn("reuse saved 5 cluster start(s): 8 cluster class(es) served by 3 start(s)",
                      self.pytest_run.stdout)

    def test_the_same_clusters_serve_the_same_classes(self):
        # Plain tests keep each runner's own order (unittest sorts by name,
        # pytest keeps the file's); cluster tests follow one plan.
        def shape(lines):
            entries = [json.loads(line) for line in lines]
            clusters: dict = {}
            for entry in entries:
                if entry["cluster"]:
                    clusters.setdefault(entry["cluster"], set()).add((entry["id"], entry["nodes"]))
            first_cluster = min(i for i, e in enumerate(entries) if e["cluster"])
            before = sorted(e["id"] for e in entries[:first_cluster])
            return sorted(map(sorted, clusters.values())), before

        clusters, before = shape(self.pytest_log)
        self.assertEqual((clusters, before), shape(self.unittest_log))
        self.assertEqual(len(clusters), 3)
        self.assertEqual(len(before), 3, "plain classes first")

    def test_module_fixtures_run_once(self):
        self.assertEqual(self.pytest_markers.count("setUpModule"), 1)
        self.assertEqual(self.pytest_markers.count("tearDownModule"), 1)

    def test_junit_carries_the_cluster_properties(self):
        root = ET.parse(self.sample.path("pytest.xml")).getroot()
        properties = {}
        for case in root.iter("testcase"):
            found = {p.get("name"): p.get("value") for p in case.iter("property")}
            properties[f"{case.get('classname')}.{case.get('name')}"] = found
        five = properties["tests.test_big.Five.test_five_nodes"]
        self.assertEqual(sorted(five), ["disttest.cluster.id", "disttest.cluster.reused",
                                        "disttest.cluster.simulated", "disttest.cluster.size",
                                        "disttest.cluster.startup_s"])
        self.assertEqual(five["disttest.cluster.size"], "5")
        self.assertEqual(five["disttest.cluster.simulated"], "false")
        self.assertGreater(float(five["disttest.cluster.startup_s"]), 0)
        self.assertEqual(properties["tests.test_plain.PlainFirst.test_plainonly_one"], {})
        # The same names as disttest's own report, on each class's suite there.
        ours = self.sample.path("disttest.xml")
        again = self.sample.run("discover", "-s", "tests", "-t", ".", "--junit-xml", str(ours))
        self.assertEqual(again.returncode, 0, again)
        names = {p.get("name") for p in ET.parse(ours).getroot().iter("property")}
        self.assertEqual(names, set(five))
        clusters = {p["disttest.cluster.id"] for p in properties.values() if p}
        self.assertEqual(len(clusters), 3)


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class SelectionAndOptionTests(unittest.TestCase):

    def setUp(self):
        self.sample = Sample(self.addCleanup, "mixed")

    def ids_run(self):
        return sorted(json.loads(line)["id"] for line in self.sample.read_lines("log.jsonl"))

    def compare_selection(self, marker_expression: str, *disttest_args: str) -> list[str]:
        run = self.sample.run(*PLUGIN, "tests", "-m", marker_expression, module="pytest")
        self.assertEqual(run.returncode, 0, run)
        by_pytest = self.ids_run()
        run = self.sample.run("discover", "-s", "tests", "-t", ".", *disttest_args)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(by_pytest, self.ids_run())
        return by_pytest

    def test_tags_are_markers(self):
        self.assertEqual(len(self.compare_selection("distributed", "--only", "distributed")), 10)
        self.assertEqual(self.compare_selection("smoke", "--only", "smoke"),
                         ["tests.test_plain.PlainFirst.test_plainonly_smoke",
                          "tests.test_small.Three.test_three_smoke"])
        self.assertNotIn("tests.test_small.Two.test_two_nodes",
                         self.compare_selection("not replication", "--exclude", "replication"))

    def test_deselected_classes_start_no_cluster(self):
        run = self.sample.run(*PLUGIN, "tests", "-m", "replication", module="pytest")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(cluster_starts(run.stdout), 1)
        self.assertIn("1 passed, 14 deselected", run.stdout)

    def test_cluster_size_and_simulate(self):
        run = self.sample.run(*PLUGIN, "tests/test_small.py", "--cluster-size", "4",
                              "--simulate", module="pytest")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual({json.loads(line)["nodes"] for line in
                          self.sample.read_lines("log.jsonl")}, {4})
        self.assertRegex(run.stdout, r"c1-\w+ +4 .* simulated")
        self.assertEqual(run.agents, [])  # simulated: no node process

    def test_a_bad_cluster_size_is_a_usage_error(self):
        run = self.sample.run(*PLUGIN, "tests", "--cluster-size", "0", module="pytest")
        self.assertEqual(run.returncode, 4, run)
        self.assertIn("--cluster-size must be a whole number of nodes from 1 up", run.stderr)
        run = self.sample.run(*PLUGIN, "tests", "--cluster-size", "500", module="pytest")
        self.assertEqual(run.returncode, 4, run)
        self.assertIn("--cluster-size = 500 is not allowed", run.stderr)
        self.assertIn("max_cluster_size", run.stderr)

    def test_cluster_debug_shows_operations_and_rpcs(self):
        run = self.sample.run(*PLUGIN, "tests/test_small.py", "--cluster-debug",
                              module="pytest")
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stdout, r"disttest: starting cluster c1-\w+ \(2 nodes\)")
        self.assertRegex(run.stdout, r"disttest: rpc node-0 node_name ok in")
        self.assertIn("disttest: growing cluster", run.stdout)

    def test_quiet_without_options_verbose_with_v(self):
        quiet = self.sample.run(*PLUGIN, "tests/test_small.py", module="pytest")
        self.assertNotIn("starting cluster", quiet.stdout)
        verbose = self.sample.run(*PLUGIN, "tests/test_small.py", "-v", module="pytest")
        self.assertRegex(verbose.stdout, r"::test_three_nodes \n\[ *[\d.]+s\] disttest: "
                                         r"growing cluster c1-\w+ from 2 to 3 nodes")


_XUNIT_MODULE = textwrap.dedent("""
    import os
    import disttest


    def setup_module():
        with open(os.environ["SAMPLE_MARKERS"], "a") as f:
            f.write("setup_module\\n")


    class Small(disttest.DistributedTestCase):
        cluster_size = 1

        def test_small(self):
            pass


    class Big(disttest.DistributedTestCase):
        cluster_size = 3

        def test_big(self):
            pass
    """)

_MIDDLE_MODULE = textwrap.dedent("""
    import disttest


    class Middle(disttest.DistributedTestCase):
        cluster_size = 2

        def test_middle(self):
            pass
    """)


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class XunitModuleFixtureTests(unittest.TestCase):

    def test_a_module_with_setup_module_is_kept_whole(self):
        # Sizes 1 and 3 in one module, 2 in another: ordered by size alone the
        # module would be split around the other one, and set up twice.
        sample = Sample(self.addCleanup, "empty")
        (sample.root / "test_a_xunit.py").write_text(_XUNIT_MODULE)
        (sample.root / "test_b_middle.py").write_text(_MIDDLE_MODULE)
        run = sample.run(*PLUGIN, "-v", "test_a_xunit.py", "test_b_middle.py", module="pytest")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(sample.read_lines("markers.txt"), ["setup_module"])
        self.assertEqual(cluster_starts(run.stdout), 1, run)
        order = re.findall(r"::(\w+)::", run.stdout)
        self.assertIn(order, (["Small", "Big", "Middle"], ["Middle", "Small", "Big"]), run)


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class FallbackTests(unittest.TestCase):

    ENV = {"DISTTEST_STARTUP_TIMEOUT": "0.001", "DISTTEST_STARTUP_RETRIES": "0"}

    def test_fallback_option(self):
        sample = Sample(self.addCleanup, "failstart")
        run = sample.run(*PLUGIN, "tests", "--fallback", "skip", module="pytest", env=self.ENV)
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("2 passed, 3 skipped", run.stdout)
        self.assertIn("skip: tests.test_start.CannotStart", run.stdout)
        run = sample.run(*PLUGIN, "tests", "--fallback", "fail", module="pytest", env=self.ENV)
        self.assertEqual(run.returncode, 1, run)
        self.assertIn("2 passed, 3 errors", run.stdout)
        self.assertIn("did not report ready within 0.001s", run.stdout)


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class InactiveTests(unittest.TestCase):

    def test_a_suite_without_cluster_tests_is_left_alone(self):
        sample = Sample(self.addCleanup, "compat")
        plain = sample.run("-p", "no:cacheprovider", "--collect-only", "-q", "tests",
                           module="pytest")
        planned = sample.run(*PLUGIN, "--collect-only", "-q", "tests", module="pytest")
        self.assertEqual(planned.stdout.splitlines()[:-1], plain.stdout.splitlines()[:-1])
        self.assertIn("test_loadtests.py::", planned.stdout)
        run = sample.run(*PLUGIN, "tests", "-q", "--continue-on-collection-errors",
                         module="pytest")
        self.assertRegex(run.stdout, r"\d+ passed")
        self.assertNotIn("Cluster usage", run.stdout)
        self.assertNotIn("- disttest -", run.stdout)


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class KeepClusterTests(unittest.TestCase):

    def test_keep_cluster_leaves_it_for_the_next_run(self):
        project = Project(self, "keep")
        first = project.run(*PLUGIN, "tests", "--keep-cluster", module="pytest")
        self.assertEqual(first.returncode, 0, first)
        self.assertIn("kept for the next run", first.stdout)
        [record] = project.records()
        second = project.run("discover", "-s", "tests", "-t", ".", report=True)
        self.assertEqual(second.returncode, 0, second)
        self.assertEqual(second.report["cluster_starts"], 0, second)
        self.assertEqual(second.report["clusters"][0]["id"], record["id"])


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class InterruptTests(unittest.TestCase):

    def test_sigterm_stops_the_clusters_and_cleans_up(self):
        project = Project(self, "sleepy")
        proc = project.popen(*PLUGIN, "tests", module="pytest", env={"SAMPLE_SLEEP": "60"})
        self.addCleanup(proc.kill)
        pids = [int(p) for p in project.wait_marker("started", proc)]
        clusters = project.wait_marker("clusters", proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 2, out + err)  # pytest's "interrupted"
        self.assertIn("KeyboardInterrupt", out)
        self.assertTrue(support.wait_for(lambda: all(support.gone(p) for p in pids), 5))
        support.assert_no_leaks(self, pid=proc.pid, cluster_ids=clusters, processes=False)


@unittest.skipUnless(HAVE_PYTEST and HAVE_XDIST, "pytest-xdist is not installed")
class XdistTests(unittest.TestCase):

    def test_workers_keep_cluster_sharing_classes_and_modules_together(self):
        sample = Sample(self.addCleanup, "mixed")
        junit = sample.path("pytest.xml")
        run = sample.run(*PLUGIN, "-p", "xdist", "tests", "-n", "2", "--dist", "loadgroup",
                         f"--junitxml={junit}", module="pytest")
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("15 passed", run.stdout)
        # One summary per worker, and the same three starts in all.
        self.assertRegex(run.stdout, r"disttest \(gw0\)")
        self.assertEqual(cluster_starts(run.stdout), 3, run)
        self.assertEqual(sample.read_lines("markers.txt").count("setUpModule"), 1)
        self.assertEqual(len(pytest_outcomes(junit)), 15)
        ids = {p.get("value") for p in ET.parse(junit).getroot().iter("property")
               if p.get("name") == "disttest.cluster.id"}
        self.assertGreaterEqual(len(ids), 2)
        self.assertNotIn("may be split across xdist workers", run.stdout)

    def test_other_modes_are_warned_about(self):
        sample = Sample(self.addCleanup, "mixed")
        run = sample.run(*PLUGIN, "-p", "xdist", "tests", "-n", "2", module="pytest")
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("15 passed", run.stdout)
        self.assertIn("run with --dist loadgroup", run.stdout)


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class InstalledTests(unittest.TestCase):
    """The entry point as setup.cfg declares it, found the way pytest finds
    installed plugins (a dist-info directory on sys.path)."""

    def setUp(self):
        site = Path(tempfile.mkdtemp(prefix="disttest-site-"))
        self.addCleanup(__import__("shutil").rmtree, site, True)
        setup = configparser.ConfigParser()
        setup.read(Path(support.REPO, "setup.cfg"))
        info = site / "disttest-0.0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: disttest\nVersion: 0.0.0\n")
        (info / "entry_points.txt").write_text(
            "[pytest11]\n" + setup["options.entry_points"]["pytest11"].strip() + "\n")
        self.site = str(site)

    def run_pytest(self, *args):
        sample = Sample(self.addCleanup, "mixed")
        env = {"PYTHONPATH": f"{self.site}:{support.REPO}:{Path(support.REPO, 'tests/samples/_spy')}"}
        return sample.run("-p", "no:cacheprovider", *args, "tests/test_small.py",
                          module="pytest", env=env)

    def test_the_entry_point_loads_the_plugin(self):
        run = self.run_pytest()
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(cluster_starts(run.stdout), 1, run)

    def test_installed_and_named_with_p_is_loaded_once(self):
        run = self.run_pytest("-p", "disttest.pytest_plugin")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.stdout.count("Cluster usage"), 1, run)


@unittest.skipUnless(HAVE_PYTEST_COV, "pytest-cov is not installed")
class PytestCovTests(unittest.TestCase):

    def test_pytest_cov_reports_lines_run_only_on_nodes(self):
        sample = Sample(self.addCleanup, "coverage")
        run = sample.run(*PLUGIN, "--cov=.", "--cov-report=json:cov.json", "test_store.py",
                         module="pytest")
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("5 passed", run.stdout)
        self.assertEqual(sorted(p.name for p in sample.root.glob(".coverage.*")), [])
        data = json.loads((sample.root / "cov.json").read_text())["files"]["store.py"]
        store = sample.root / "store.py"
        self.assertEqual(marked_lines(store, "# node:") - set(data["executed_lines"]), set())
        self.assertEqual(set(data["missing_lines"]), marked_lines(store, "# nowhere"))


@unittest.skipUnless(HAVE_PYTEST, "pytest is not installed")
class PluginOptionsTests(unittest.TestCase):
    """The options pytest and python -m disttest share read and check the same."""

    def test_fallback_choices_are_disttest_s(self):
        from disttest.fallback import POLICIES

        for args in (["-m", "pytest", *PLUGIN], ["-m", "disttest"]):
            with self.subTest(args[1]):
                run = support.run_python([*args, "--fallback", "never"])
                self.assertNotEqual(run.returncode, 0, run)
                allowed = re.search(r"invalid choice: '?never'? \(choose from (.*)\)", run.stderr)
                self.assertIsNotNone(allowed, run.stderr)
                self.assertEqual(re.findall(r"\w+", allowed.group(1)), list(POLICIES))

    def test_shared_options_have_the_same_help(self):
        shared = ("--cluster-size", "--simulate", "--keep-cluster", "--cluster-debug",
                  "--fallback")
        helps = []
        for args in (["-m", "pytest", *PLUGIN], ["-m", "disttest"]):
            run = support.run_python([*args, "--help"])
            self.assertEqual(run.returncode, 0, run)
            helps.append({option: text for option, text in option_helps(run.stdout).items()
                          if option in shared})
        self.assertEqual(sorted(helps[0]), sorted(shared))
        self.assertEqual(helps[0], helps[1])
        self.assertIn("whatever its class asks for", helps[0]["--cluster-size"])


def option_helps(usage: str) -> dict[str, str]:
    """{option: its help text, on one line} from argparse-style ``--help`` output."""
    helps, option = {}, None
    for line in usage.splitlines():
        entry = re.match(r"  (-\S+?)(?:[ =]\S+)?(?:  +(.*)|$)", line)
        if entry:
            option = entry.group(1).rstrip(",")
            helps[option] = entry.group(2) or ""
        elif option and line.startswith("   ") and line.strip():
            helps[option] = (helps[option] + " " + line.strip()).strip()
        else:
            option = None
    return helps


if __name__ == "__main__":
    unittest.main()
