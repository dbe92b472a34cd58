"""``--junit-xml``: the JUnit XML report, end to end and edge by edge.

The end-to-end classes run ``python -m disttest --junit-xml`` on the sample
project ``tests/junit/project`` (every unittest outcome, subtests, a failing
``setUpClass`` and ``setUpModule``, output under ``-b``, a cluster class of
two nodes) and check the document three ways: against ``tests/junit/JUnit.xsd``
(a subset of the Jenkins xUnit plugin's junit-10.xsd) when ``xmlschema`` is
installed, structurally with ElementTree (required attributes, counts that
add up), and against unittest's own "Ran N tests" / "FAILED (...)" lines of
the same run. After every run no node process, port lock or cluster temp dir
of the run may be left.

The unit classes build reports in-process from a real DistributedTestResult
(plain test classes made inside the tests, so discovery never collects them)
or from hand-made records, for the cases a sample run cannot show.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from unittest.runner import _WritelnDecorator

from disttest.environment import CI_PROVIDERS
from disttest.report import junit
from disttest.report.stats import ClusterStats, RunStats
from disttest.result import DistributedTestResult, RunCheck, TestRecord
from tests import support

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "junit" / "JUnit.xsd"
PROJECT = HERE / "junit" / "project"
FIXTURES = {"setUpClass", "tearDownClass", "setUpModule", "tearDownModule"}
SUBTEST_NAME = re.compile(r"^\w+ [\[(]")  # "test_x (i=1)", "test_x [msg]"
_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s$", re.M)
_STATUS = re.compile(r"^(OK|FAILED)(?: \((.*)\))?$", re.M)

try:
    import xmlschema
except ImportError:  # pip install xmlschema (not a dependency of disttest)
    xmlschema = None


# -- checks shared by every test ------------------------------------------------------
def validate_with_schema(testcase: unittest.TestCase, path: Path) -> None:
    if xmlschema is None:
        testcase.skipTest("xmlschema is not installed: the XSD check did not run "
                          "(the structural checks did)")
    errors = [str(e) for e in xmlschema.XMLSchema(str(SCHEMA)).iter_errors(str(path))]
    testcase.assertEqual(errors, [], f"{path} is not valid under {SCHEMA.name}")


def check_structure(testcase: unittest.TestCase, root: ET.Element) -> None:
    """What the schema says, for machines without xmlschema, and that counts add up."""
    t = testcase
    t.assertEqual(root.tag, "testsuites")
    t.assertEqual(root.get("name"), "disttest")
    totals = dict.fromkeys(("tests", "failures", "errors"), 0)
    for suite in root:
        t.assertEqual(suite.tag, "testsuite")
        for attribute in ("name", "tests", "failures", "errors", "skipped", "time",
                          "timestamp", "hostname"):
            t.assertTrue(suite.get(attribute), f"testsuite without {attribute}")
        t.assertRegex(suite.get("timestamp"), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
        children = [child.tag for child in suite]
        t.assertEqual(children, sorted(children, key=lambda tag: tag != "properties"),
                      "properties come before the testcases")
        cases = suite.findall("testcase")
        t.assertEqual(len(cases), len(children) - children.count("properties"))
        counted = {"tests": len(cases), "failures": 0, "errors": 0, "skipped": 0}
        for case in cases:
            t.assertTrue(case.get("name"))
            t.assertEqual(case.get("classname"), suite.get("name"))
            t.assertRegex(case.get("time"), r"^\d+\.\d{3}$")
            tags = [child.tag for child in case]
            results = [tag for tag in tags if tag in ("failure", "error", "skipped")]
            t.assertLessEqual(len(results), 1, f"{case.get('name')}: {tags}")
            t.assertEqual(tags, results + [tag for tag in ("system-out", "system-err")
                                           if tag in tags], f"{case.get('name')}: {tags}")
            for tag in results:
                counted[{"failure": "failures", "error": "errors",
                         "skipped": "skipped"}[tag]] += 1
        t.assertEqual({k: int(suite.get(k)) for k in counted}, counted, suite.get("name"))
        for key in totals:
            totals[key] += counted[key]
    t.assertEqual({k: int(root.get(k)) for k in totals}, totals)
    t.assertRegex(root.get("time"), r"^\d+\.\d{3}$")


def unittest_counts(stderr: str) -> dict[str, int]:
    """unittest's closing lines as numbers ("Ran 13 tests", "FAILED (failures=6, ...)")."""
    ran = _RAN.findall(stderr)
    status = _STATUS.findall(stderr)
    if not ran or not status:
        raise AssertionError(f"no unittest result lines in:\n{stderr}")
    counts = dict.fromkeys(("failures", "errors", "skipped", "expected failures",
                            "unexpected successes"), 0)
    counts["run"] = int(ran[-1])
    for item in filter(None, status[-1][1].split(", ")):
        name, value = item.split("=")
        counts[name] = int(value)
    return counts


def cases_by_name(root: ET.Element) -> dict[str, ET.Element]:
    return {f"{case.get('classname')}.{case.get('name')}": case for case in root.iter("testcase")}


def build_xml(result, stats=None, **kwargs) -> ET.Element:
    """Build, serialize and parse again: what a CI server would read."""
    root = junit.build(result, stats or RunStats(), **kwargs)
    return ET.fromstring(ET.tostring(root, encoding="utf-8"))


# -- end to end ---------------------------------------------------------------------------
class ProjectRun:
    """``python -m disttest *args --junit-xml`` in a temporary copy of the sample."""

    def __init__(self, add_cleanup, *args: str, setting: bool = False) -> None:
        """``setting``: ask for the report with DISTTEST_JUNIT_XML, not the option."""
        tmp = Path(tempfile.mkdtemp(prefix="disttest-junit-"))
        add_cleanup(shutil.rmtree, tmp, True)
        root = tmp / "project"
        shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("__pycache__"))
        self.path = tmp / "reports" / "junit.xml"  # a directory the report must create
        env = {k: v for k, v in os.environ.items()
               if k not in CI_PROVIDERS and not k.startswith("DISTTEST_")
               and k not in ("NO_COLOR", "FORCE_COLOR", "PYTHONWARNINGS")}
        env.update(PYTHONPATH=support.REPO, DISTTEST_STATE_DIR=str(tmp / "state"))
        argv = [sys.executable, "-m", "disttest", *args]
        if setting:
            env["DISTTEST_JUNIT_XML"] = str(self.path)
        else:
            argv += ["--junit-xml", str(self.path)]
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            self.stdout, self.stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        self.pid, self.returncode = proc.pid, proc.returncode
        self.root = ET.parse(self.path).getroot() if self.path.exists() else None
        ids = [p.get("value") for p in self.root.iter("property")
               if p.get("name") == "disttest.cluster.id"] if self.root is not None else []
        # No node agent of the run alive (psutil scan of "disttest.agent" command
        # lines marked as ours), no port lock of its pid, no temp dir of its clusters.
        support.assert_no_leaks(wait=5.0, pid=self.pid, cluster_ids=ids)

    def __str__(self) -> str:
        return (f"exit status {self.returncode}\n--- stdout\n{self.stdout}"
                f"\n--- stderr\n{self.stderr}")


class JUnitReportOfBufferedRun(unittest.TestCase):
    """``-b``: the whole sample, captured output moved to system-out/system-err."""

    args = ("-b",)

    @classmethod
    def setUpClass(cls):
        cls.run_ = ProjectRun(cls.addClassCleanup, *cls.args)
        if cls.run_.root is None:
            raise AssertionError(f"no report written\n{cls.run_}")
        cls.root = cls.run_.root
        cls.cases = cases_by_name(cls.root)

    def case(self, classname: str, name: str) -> ET.Element:
        key = f"tests.{classname}.{name}"
        self.assertIn(key, self.cases, sorted(self.cases))
        return self.cases[key]

    def test_valid_under_the_junit_schema(self):
        validate_with_schema(self, self.run_.path)

    def test_structure_and_counts_add_up(self):
        check_structure(self, self.root)

    def test_counts_agree_with_unittest(self):
        counts = unittest_counts(self.run_.stderr)
        self.assertEqual(self.run_.returncode, 1, self.run_)
        cases = list(self.root.iter("testcase"))
        subtests = [c for c in cases if SUBTEST_NAME.match(c.get("name"))]
        fixtures = [c for c in cases if c.get("name") in FIXTURES]
        summaries = [c for c in cases if c.find("failure") is not None
                     and c.find("failure").get("type") == "disttest.SubtestsFailed"]
        total = {k: int(self.root.get(k)) for k in ("tests", "failures", "errors")}
        skipped = sum(int(s.get("skipped")) for s in self.root)
        # unittest counts each failing subtest and each fixture error; the report adds a
        # testcase for each, and fails a test that only its subtests failed. From
        # Python 3.12 on, unittest's "Ran N" leaves out the test skipped by a
        # decorator (it never starts); the report still has its testcase.
        never_started = support.ran(1, decorated_skips=1) == 0
        self.assertEqual(total["tests"], counts["run"] + len(subtests) + len(fixtures)
                         + (1 if never_started else 0))
        self.assertEqual(total["errors"], counts["errors"])
        self.assertEqual(total["failures"], counts["failures"]
                         + counts["unexpected successes"] + len(summaries))
        self.assertEqual(skipped, counts["skipped"])
        expected = [c for c in cases if (c.findtext("system-out") or "").startswith(
            "expected failure")]
        self.assertEqual(len(expected), counts["expected failures"])
        # and the sample's known numbers, so a bug shared by both sides still shows
        self.assertEqual((counts["run"], counts["failures"], counts["errors"],
                          counts["skipped"]), (support.ran(13, decorated_skips=1), 6, 4, 2), self.run_)
        self.assertEqual((total["tests"], total["failures"], total["errors"], skipped),
                         (19, 8, 4, 2))

    def test_one_suite_per_class(self):
        names = [suite.get("name") for suite in self.root]
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(set(names), {"tests.test_outcomes.Outcomes",
                                      "tests.test_outcomes.Subtests",
                                      "tests.test_outcomes.BrokenSetUpClass",
                                      "tests.test_modfixture", "tests.test_cluster.Pair"})
        self.assertEqual(names[-1], "tests.test_cluster.Pair", "cluster classes run last")

    def test_every_outcome(self):
        outcomes = "test_outcomes.Outcomes"
        self.assertEqual(list(self.case(outcomes, "test_pass")), [])
        failure = self.case(outcomes, "test_fail").find("failure")
        self.assertEqual(failure.get("message"), "1 != 2 : one is not two")
        self.assertEqual(failure.get("type"), "AssertionError")
        self.assertIn('self.assertEqual(1, 2, "one is not two")', failure.text)
        error = self.case(outcomes, "test_error").find("error")
        self.assertEqual((error.get("message"), error.get("type")),
                         ("boom in test_error", "RuntimeError"))
        self.assertTrue(error.text.startswith("Traceback (most recent call last):"))
        skipped = self.case(outcomes, "test_skip").find("skipped")
        self.assertEqual(skipped.get("message"), "skipped on purpose")
        expected = self.case(outcomes, "test_expected_failure")
        self.assertEqual([child.tag for child in expected], ["system-out"], "counts as passed")
        self.assertIn("expected failure", expected.findtext("system-out"))
        unexpected = self.case(outcomes, "test_unexpected_success").find("failure")
        self.assertEqual(unexpected.get("message"), "unexpected success")

    def test_fixture_errors_are_error_testcases_in_their_suite(self):
        suite = self.root.find("testsuite[@name='tests.test_outcomes.BrokenSetUpClass']")
        self.assertEqual([c.get("name") for c in suite], ["setUpClass"],
                         "the class's tests never ran")
        error = suite.find("testcase/error")
        self.assertEqual((error.get("type"), error.get("message")),
                         ("ValueError", "setUpClass failed on purpose"))
        module = self.root.find("testsuite[@name='tests.test_modfixture']")
        self.assertEqual([c.get("name") for c in module], ["setUpModule"])
        self.assertEqual(module.find("testcase/error").get("type"), "OSError")

    def test_each_failing_subtest_is_a_testcase(self):
        first, third = (self.case("test_outcomes.Subtests",
                                          f"test_odd_subtests_fail (i={i})")
                        for i in (1, 3))
        self.assertEqual(first.find("failure").get("message"), "1 != 0 : odd 1")
        self.assertEqual(third.find("failure").get("message"), "1 != 0 : odd 3")
        self.assertIn("AssertionError: 1 != 0 : odd 3", third.find("failure").text)
        for passing in (0, 2):
            self.assertNotIn(f"tests.Subtests.test_odd_subtests_fail (i={passing})",
                             self.cases)
        self.assertFalse(any("test_subtests_pass (" in key for key in self.cases))
        error = self.case("test_outcomes.Subtests",
                          "test_subtest_error_then_own_failure [lookup]")
        self.assertEqual(error.find("error").get("type"), "KeyError")

    def test_a_test_failed_only_by_subtests_fails_with_a_summary(self):
        parent = self.case("test_outcomes.Subtests", "test_odd_subtests_fail").find("failure")
        self.assertEqual(parent.get("type"), "disttest.SubtestsFailed")
        self.assertEqual(parent.get("message"), "2 subtests failed: test_odd_subtests_fail "
                                                "(i=1), test_odd_subtests_fail (i=3)")
        self.assertIn("test_odd_subtests_fail (i=1): 1 != 0 : odd 1", parent.text)

    def test_a_test_that_failed_itself_keeps_its_own_failure(self):
        parent = self.case("test_outcomes.Subtests", "test_subtest_error_then_own_failure")
        failure = parent.find("failure")
        self.assertEqual(failure.get("message"), "own failure after the subtests")
        self.assertIn('self.fail("own failure after the subtests")', failure.text)
        self.assertNotIn("KeyError", failure.text.split("subtests that failed")[0])

    def test_a_skipped_subtest_skips_alone(self):
        self.assertEqual(list(self.case("test_outcomes.Subtests", "test_subtest_skipped")), [],
                         "the test itself passed")
        skipped = self.case("test_outcomes.Subtests",
                            "test_subtest_skipped (i=0)").find("skipped")
        self.assertEqual(skipped.get("message"), "not this one")

    def test_captured_output_moves_to_system_out_and_err(self):
        case = self.case("test_outcomes.Outcomes", "test_fail")
        self.assertEqual(case.findtext("system-out"), "stdout-of-test_fail\n")
        self.assertEqual(case.findtext("system-err"), "stderr-of-test_fail\n")
        text = case.find("failure").text
        self.assertTrue(text.rstrip().endswith("AssertionError: 1 != 2 : one is not two"))
        self.assertNotIn("Stdout:", text)
        self.assertNotIn("stdout-of-test_fail", text)
        subtest = self.case("test_outcomes.Subtests", "test_odd_subtests_fail (i=1)")
        if sys.version_info >= (3, 11):
            self.assertEqual(subtest.findtext("system-out"), "subtest-stdout-0\nsubtest-stdout-1\n")
        else:  # before 3.11 unittest reports subtests when the test ends, with all its output
            self.assertTrue(subtest.findtext("system-out").startswith(
                "subtest-stdout-0\nsubtest-stdout-1\n"))
        cluster = self.case("test_cluster.Pair", "test_prints_and_fails")
        self.assertEqual(cluster.findtext("system-out"), "stdout-of-a-cluster-test\n")

    def test_control_characters_are_escaped(self):
        raw = self.run_.path.read_bytes()
        self.assertFalse(re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", raw))
        failure = self.case("test_outcomes.Outcomes", "test_control_chars").find("failure")
        self.assertEqual(failure.get("message"), r"bell\x07 escape\x1b[31m nul\x00 end")
        self.assertIn(r"AssertionError: bell\x07 escape\x1b[31m nul\x00 end", failure.text)

    def test_cluster_properties_on_the_cluster_class_only(self):
        suite = self.root.find("testsuite[@name='tests.test_cluster.Pair']")
        properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
        self.assertEqual(set(properties), {"disttest.cluster.id", "disttest.cluster.size",
                                           "disttest.cluster.simulated",
                                           "disttest.cluster.startup_s",
                                           "disttest.cluster.reused"})
        self.assertRegex(properties["disttest.cluster.id"], r"^c\d+-[0-9a-f]{4}$")
        self.assertEqual(properties["disttest.cluster.size"], "2")
        self.assertEqual(properties["disttest.cluster.simulated"], "false")
        self.assertEqual(properties["disttest.cluster.reused"], "false")
        self.assertGreater(float(properties["disttest.cluster.startup_s"]), 0)
        self.assertIn(properties["disttest.cluster.id"], self.run_.stderr)
        others = [s.get("name") for s in self.root if s.find("properties") is not None]
        self.assertEqual(others, ["tests.test_cluster.Pair"])
        self.assertEqual(len(suite.findall("testcase")), 2)


class JUnitReportOfUnbufferedRun(unittest.TestCase):
    """Without ``-b`` the output went to the console: failure texts are whole tracebacks.
    The report is asked for by the ``junit_xml`` setting (here from the environment)."""

    def test_valid_and_without_captured_output(self):
        run = ProjectRun(self.addCleanup, setting=True)
        self.assertIsNotNone(run.root, run)
        check_structure(self, run.root)
        self.assertIn("stdout-of-test_fail", run.stdout)
        cases = cases_by_name(run.root)
        case = cases["tests.test_outcomes.Outcomes.test_fail"]
        self.assertEqual([child.tag for child in case], ["failure"])
        counts = unittest_counts(run.stderr)
        self.assertEqual(int(run.root.get("errors")), counts["errors"])
        if xmlschema is not None:
            validate_with_schema(self, run.path)


# -- in-process -------------------------------------------------------------------------
def run_in_process(*classes, buffer: bool = False) -> DistributedTestResult:
    """Run plain test classes with disttest's result class, as the runner would."""
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(cls)
                               for cls in classes)
    # -b echoes a failing test's output to the streams the result was made with
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = DistributedTestResult(_WritelnDecorator(io.StringIO()), True, 0)
        result.buffer = buffer
        result.startTestRun()
        suite.run(result)
        result.stopTestRun()
    return result


class BuildFromResults(unittest.TestCase):

    def test_teardown_class_error_follows_the_class_tests(self):
        class Torn(unittest.TestCase):
            @classmethod
            def tearDownClass(cls):
                raise RuntimeError("tearDownClass broke")

            def test_a(self):
                pass

        root = build_xml(run_in_process(Torn))
        suite = root.find("testsuite")
        self.assertTrue(suite.get("name").endswith("Torn"))
        self.assertEqual([c.get("name") for c in suite], ["test_a", "tearDownClass"])
        self.assertEqual(suite.find("testcase/error").get("type"), "RuntimeError")
        check_structure(self, root)

    def test_characters_xml_cannot_hold_are_escaped(self):
        class Odd(unittest.TestCase):
            def test_surrogate_and_noncharacter(self):
                self.fail("lone \udcff and \ufffe, tab \t kept\x0cform feed on the next line")

        root = build_xml(run_in_process(Odd))
        failure = root.find("testsuite/testcase/failure")
        self.assertEqual(failure.get("message"), "lone \\udcff and \\ufffe, tab \t kept")
        self.assertIn("kept\\x0cform feed", failure.text)

    def test_output_split_only_when_buffered(self):
        class Loud(unittest.TestCase):
            def test_err_only(self):
                sys.stderr.write("only stderr, no newline")
                self.fail("loud")

        quiet = build_xml(run_in_process(Loud, buffer=True)).find("testsuite/testcase")
        self.assertIsNone(quiet.find("system-out"))
        self.assertEqual(quiet.findtext("system-err"), "only stderr, no newline\n")
        self.assertNotIn("Stderr:", quiet.find("failure").text)
        # a text that merely looks like -b output stays whole when the run was not buffered
        record = TestRecord("m.C.test_x", "failed", classname="m.C", name="test_x",
                            message="x", details="Traceback...\nAssertionError: x\n"
                                                 "\nStdout:\nnot captured\n")
        result = _FakeResult([record])
        case = build_xml(result, buffered_output=False).find("testsuite/testcase")
        self.assertIn("Stdout:\nnot captured", case.find("failure").text)
        self.assertIsNone(case.find("system-out"))
        case = build_xml(result, buffered_output=True).find("testsuite/testcase")
        self.assertEqual(case.findtext("system-out"), "not captured\n")


class _FakeResult:
    """The parts of a result the report reads, for records made by hand."""

    buffer = False

    def __init__(self, records) -> None:
        self.records = records
        self.failures: list = []
        self.errors: list = []


class BuildFromRecords(unittest.TestCase):

    def test_run_checks_go_to_a_disttest_suite(self):
        check = RunCheck("disttest cleanup check (--strict-cleanup)")
        record = TestRecord(check.id(), "error", classname=str(check), name=str(check),
                            message="the run left resources behind",
                            details="Traceback (most recent call last):\n  File \"x\", line 1\n"
                                    "disttest.errors.DisttestError: the run left ...\n")
        suite = build_xml(_FakeResult([record])).find("testsuite")
        self.assertEqual(suite.get("name"), "disttest")
        case = suite.find("testcase")
        self.assertEqual(case.get("name"), "disttest cleanup check (--strict-cleanup)")
        self.assertEqual(case.find("error").get("type"), "disttest.errors.DisttestError")

    def test_suites_in_order_of_first_report(self):
        def record(classname, name):
            return TestRecord(f"{classname}.{name}", classname=classname, name=name)

        fixture = TestRecord("tearDownClass (m.A)", "error", classname="tearDownClass (m.A)",
                             name="tearDownClass (m.A)", message="broke")
        records = [record("m.A", "test_1"), record("m.B", "test_2"), fixture,
                   record("m.C", "test_3"), record("m.B", "test_4")]
        root = build_xml(_FakeResult(records))
        self.assertEqual([(s.get("name"), [c.get("name") for c in s]) for s in root],
                         [("m.A", ["test_1", "tearDownClass"]), ("m.B", ["test_2", "test_4"]),
                          ("m.C", ["test_3"])])
        check_structure(self, root)

    def test_an_interrupted_test_is_an_error(self):
        record = TestRecord("m.C.test_slow", "interrupted", classname="m.C", name="test_slow")
        root = build_xml(_FakeResult([record]))
        error = root.find("testsuite/testcase/error")
        self.assertEqual(error.get("type"), "interrupted")
        self.assertEqual(root.get("errors"), "1")

    def test_properties_for_each_cluster_a_class_used(self):
        stats = RunStats()
        stats.clusters["c1-aaaa"] = ClusterStats("c1-aaaa", 3, simulated=True, startup_s=0.25,
                                                 reused_from_previous_run=True)
        records = [TestRecord("m.C.test_a", classname="m.C", name="test_a", cluster="c1-aaaa"),
                   TestRecord("m.C.test_b", classname="m.C", name="test_b", cluster="c9-ffff"),
                   TestRecord("m.C.test_c", classname="m.C", name="test_c", cluster="c1-aaaa"),
                   TestRecord("m.D.test_d", classname="m.D", name="test_d")]
        root = build_xml(_FakeResult(records), stats)
        first, second = root
        self.assertEqual([(p.get("name"), p.get("value")) for p in first.iter("property")],
                         [("disttest.cluster.id", "c1-aaaa"), ("disttest.cluster.size", "3"),
                          ("disttest.cluster.simulated", "true"),
                          ("disttest.cluster.startup_s", "0.250"),
                          ("disttest.cluster.reused", "true"),
                          ("disttest.cluster.id", "c9-ffff")])  # unknown to the stats: id only
        self.assertIsNone(second.find("properties"))

    def test_write_is_atomic_and_parses(self):
        tmp = Path(tempfile.mkdtemp(prefix="disttest-junit-unit-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        path = tmp / "deep" / "report.xml"
        record = TestRecord("m.C.test_a", classname="m.C", name="test_a", duration_s=1.23456)
        for _ in range(2):  # the second write replaces the first
            junit.write(str(path), _FakeResult([record]), RunStats())
        self.assertEqual(sorted(p.name for p in path.parent.iterdir()), ["report.xml"])
        self.assertTrue(path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>"))
        root = ET.parse(path).getroot()
        self.assertEqual(root.find("testsuite/testcase").get("time"), "1.235")
        check_structure(self, root)
        if xmlschema is not None:
            validate_with_schema(self, path)

    def test_an_empty_run_is_a_valid_document(self):
        root = build_xml(_FakeResult([]))
        self.assertEqual((root.get("tests"), len(root)), ("0", 0))
        check_structure(self, root)


if __name__ == "__main__":
    unittest.main()
