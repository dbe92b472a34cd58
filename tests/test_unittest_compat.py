"""The first promise: a unittest suite runs under ``python -m disttest`` exactly as
under ``python -m unittest`` — same results, same output (apart from run
times), same exit status.

Every comparison runs both commands on the same project and compares them,
and also checks a few known facts of the sample, so a failure that hit both
runners the same way would still show. CPython's own unittest and json test
suites are compared too (once per runner: they are the slow part).
"""
from __future__ import annotations

import json
import re
import signal
import sys
import sysconfig
import time
import unittest
from pathlib import Path

from tests.support import ran
from tests.test_runner_e2e import (Sample, described, ids_with_status, normalize,
                                   result_counts)

STDLIB = Path(sysconfig.get_paths()["stdlib"])


class CompatCase(unittest.TestCase):
    sample_name = "compat"

    def setUp(self):
        self.sample = Sample(self.addCleanup, self.sample_name)

    def both(self, *args, env=None):
        """(disttest run, unittest run) of ``args``, with their fixture markers."""
        ours = self.sample.run(*args, env=env)
        ours.markers = self.sample.read_lines("markers.txt")
        theirs = self.sample.run(*args, module="unittest", env=env)
        theirs.markers = self.sample.read_lines("markers.txt")
        return ours, theirs

    def assert_same(self, ours, theirs) -> None:
        """Same output apart from run times, same exit status, same results."""
        self.assertEqual(normalize(ours.stderr), normalize(theirs.stderr), ours)
        self.assertEqual(ours.stdout, theirs.stdout)
        self.assertEqual(ours.returncode, theirs.returncode)
        self.assertEqual(ours.markers, theirs.markers)
        self.assertEqual(ours.agents, [])


class CompatSample(CompatCase):
    """``tests/samples/compat``: plain unittest with every outcome and fixture."""

    FULL = {"run": ran(21, 4), "status": "FAILED", "failures": 5, "errors": 4, "skipped": 5,
            "expected failures": 1, "unexpected successes": 1}

    def test_whole_suite_every_outcome(self):
        ours, theirs = self.both()
        self.assert_same(ours, theirs)
        self.assertEqual(ours.counts(), self.FULL)
        self.assertEqual(ours.returncode, 1)
        self.assertRegex(ours.stderr, r"ERROR: tests\.test_broken \(unittest\.loader\."
                                      r"_FailedTest(\.tests\.test_broken)?\)")
        if sys.version_info >= (3, 11):
            self.assertIn("UNEXPECTED SUCCESS: ", ours.stderr)
        for line in ("ModuleNotFoundError: No module named 'module_that_does_not_exist_xyz'",
                     "ERROR: setUpClass (tests.test_outcomes.SetUpClassFails)",
                     f"FAIL: {described('tests.test_outcomes.Outcomes.test_subtests')} (i=1)",
                     f"FAIL: {described('tests.test_outcomes.Outcomes.test_subtests')} (i=3)",
                     "ValueError: cleanup failed"):
            self.assertIn(line, ours.stderr)
        self.assertNotIn("Cluster usage", ours.output)
        self.assertNotIn("a skipped", ours.output)
        # every fixture and cleanup ran exactly once, in unittest's order
        self.assertEqual(ours.markers, ["setUpModule", "setUpClass", "cleanup test_pass",
                                        "tearDownClass", "classCleanup", "tearDownModule",
                                        "moduleCleanup"])

    def test_verbosity(self):
        for flag in ("-v", "-q"):
            with self.subTest(flag):
                ours, theirs = self.both(flag)
                self.assert_same(ours, theirs)
                self.assertEqual(ours.counts(), self.FULL)
        self.assertIn(f"{described('tests.test_outcomes.Outcomes.test_fail')} ... FAIL",
                      self.both("-v")[0].stderr)

    def test_buffer_shows_captured_output_of_failures(self):
        # Outcomes only: CPython 3.12.1's own -b crashes on the skipped class.
        ours, theirs = self.both("-b", "tests.test_outcomes.Outcomes")
        self.assert_same(ours, theirs)
        self.assertIn("\nStdout:\ncaptured-stdout-marker\n", ours.stdout)
        self.assertIn("\nStderr:\ncaptured-stderr-marker\n", ours.stderr)
        unbuffered = self.sample.run("tests.test_outcomes")
        self.assertNotIn("Stdout:", unbuffered.output)
        self.assertIn("captured-stdout-marker", unbuffered.stdout)

    def test_locals(self):
        ours, theirs = self.both("--locals", "tests.test_outcomes.Outcomes.test_locals")
        self.assert_same(ours, theirs)
        self.assertIn("secret_local = 12345", ours.stderr)

    def test_failfast(self):
        ours, theirs = self.both("-f", "tests.test_outcomes")
        self.assert_same(ours, theirs)
        self.assertLess(ours.counts()["run"], 16)
        self.assertEqual(ours.counts()["errors"] + ours.counts().get("failures", 0), 1)

    def test_k_patterns(self):
        for pattern, run in (("alpha", 2), ("*beta*", ran(2, 1)), ("Outcomes.test_pass", 1),
                             ("nothing-matches", 0)):
            with self.subTest(pattern):
                ours, theirs = self.both("-k", pattern, "tests.test_passing",
                                         "tests.test_outcomes")
                self.assert_same(ours, theirs)
                self.assertEqual(ours.counts()["run"], run)

    def test_test_names(self):
        for names, run, status in (
                (["tests.test_passing"], ran(4, 1), 0),
                (["tests.test_passing.Alpha"], 2, 0),
                (["tests.test_passing.Alpha.test_alpha_one"], 1, 0),
                (["tests/test_passing.py"], ran(4, 1), 0),
                (["tests.test_passing.Beta", "tests.test_outcomes.Outcomes.test_fail"], ran(3, 1),
                 1),
                (["tests.test_loadtests"], 3, 0),
                (["tests.test_broken"], 1, 1),
                (["tests.test_passing.NoSuchClass"], 1, 1)):
            with self.subTest(names):
                ours, theirs = self.both("-v", *names)
                self.assert_same(ours, theirs)
                self.assertEqual((ours.counts()["run"], ours.returncode), (run, status))

    def test_load_tests_protocol(self):
        ours, theirs = self.both("-v", "tests.test_loadtests")
        self.assert_same(ours, theirs)
        self.assertEqual(sorted(ids_with_status(ours.stderr, "ok")),
                         ["tests.test_loadtests.Kept.test_kept",
                          "tests.test_loadtests.Kept.test_kept_too"])
        self.assertIn("a function test from load_tests ... ok", ours.stderr)
        self.assertNotIn("test_dropped", ours.stderr)

    def test_discover_forms(self):
        for args in (["discover"],
                     ["discover", "-s", "tests", "-p", "test_p*.py", "-t", "."],
                     ["discover", "tests", "test_p*.py", "."],
                     ["discover", "-s", "tests", "-p", "test_l*.py"]):
            with self.subTest(args):
                ours, theirs = self.both(args[0], "-v", *args[1:])
                self.assert_same(ours, theirs)
                self.assertGreater(ours.counts()["run"], 0)

    def test_usage_errors(self):
        ours, theirs = self.both("--no-such-option")
        self.assertEqual(ours.returncode, theirs.returncode)
        self.assertEqual(ours.returncode, 2)
        self.assertIn("python -m disttest", ours.stderr)
        self.assertIn("unrecognized arguments: --no-such-option", ours.stderr)


class Durations(CompatCase):
    """``--durations N`` on every Python, as unittest prints it from 3.12 on."""

    DURATION = re.compile(r"(?m)^\d+\.\d{3}s {2,}(\S.*)$")

    def slowest(self, stderr: str) -> list[str]:
        head, _, tail = stderr.partition("Slowest test durations\n")
        self.assertTrue(tail, f"no 'Slowest test durations' in:\n{stderr}")
        block = tail.split("\n\n", 1)[0]
        return self.DURATION.findall(block)

    def test_slowest_tests_listed(self):
        ours = self.sample.run("-v", "--durations", "3")
        names = self.slowest(ours.stderr)
        self.assertEqual(len(names), 3, ours)
        self.assertFalse((self.sample.root / "3").exists(), "--durations was taken for a file")
        if sys.version_info >= (3, 12):
            theirs = self.sample.run("-v", "--durations", "3", module="unittest")
            self.assertEqual(len(self.slowest(theirs.stderr)), 3)
            self.assertEqual(ours.counts(), theirs.counts())

    def test_no_abbreviations(self):
        # A prefix could mean another option on another Python.
        run = self.sample.run("--durations-f", "x")
        self.assertEqual(run.returncode, 2, run)
        self.assertIn("unrecognized arguments: --durations-f", run.stderr)


class NoTests(CompatCase):
    sample_name = "empty"

    def test_no_tests_exit_status_as_unittest(self):
        ours, theirs = self.both()
        self.assert_same(ours, theirs)
        self.assertEqual(ours.counts()["run"], 0)
        # 5 from Python 3.12 on ("NO TESTS RAN"), 0 before: whatever this Python does
        self.assertIn(ours.returncode, (0, 5))


class ModuleFixturesWithClusterClasses(CompatCase):
    """setUpModule/tearDownModule run once although the module has cluster classes."""

    sample_name = "mixed"

    def test_same_results_and_fixtures_once(self):
        ours = self.sample.run()
        ours_markers = self.sample.read_lines("markers.txt")
        theirs = self.sample.run(module="unittest")
        theirs_markers = self.sample.read_lines("markers.txt")
        self.assertEqual(ours.returncode, 0, ours)
        self.assertEqual(theirs.returncode, 0, theirs)
        self.assertEqual(ours.counts(), theirs.counts())
        self.assertEqual(ours.counts(), {"run": 15, "status": "OK"})
        for markers in (ours_markers, theirs_markers):
            for marker in ("setUpModule", "tearDownModule", "moduleCleanup",
                           "setUpClass ModSmall", "tearDownClass ModSmall"):
                self.assertEqual(markers.count(marker), 1, (marker, markers))
            self.assertEqual(markers[0], "setUpModule")
            self.assertEqual(markers[-2:], ["tearDownModule", "moduleCleanup"])
        # the same fixtures and tests ran, in the same order within the module
        self.assertEqual(ours_markers, theirs_markers)


class ScriptWithDisttestMain(CompatCase):
    """``python tests/test_main.py``: disttest.main() as unittest.main()."""

    sample_name = "mainfile"

    def script(self, *args, use_unittest=False):
        env = {"SAMPLE_USE_UNITTEST": "1"} if use_unittest else None
        run = self.sample.run("tests/test_main.py", *args, module=None, env=env)
        run.markers = []
        return run

    def test_functions_of_main_run_on_nodes(self):
        ours = self.script("-v")
        theirs = self.script("-v", use_unittest=True)
        self.assertEqual(ours.counts(), theirs.counts())
        self.assertEqual(ours.counts(), {"run": ran(4, 1), "status": "FAILED", "failures": 1,
                                         "skipped": 1})
        self.assertEqual(ours.returncode, theirs.returncode)
        self.assertEqual(ours.returncode, 1)
        name = described("__main__.ScriptCluster.test_function_of_main_runs_on_nodes")
        self.assertRegex(ours.stderr, re.escape(name) + r" \[cluster c1-[0-9a-f]{4}\] \.\.\. ok")
        self.assertIn("Cluster usage", ours.stderr)
        self.assertEqual(len(ours.agents), 2)

    def test_plain_selection_prints_what_unittest_main_prints(self):
        for args in (["-v", "Plain"], ["Plain.test_plain_pass"], ["-q", "-k", "plain"]):
            with self.subTest(args):
                self.assert_same(self.script(*args), self.script(*args, use_unittest=True))


class Interrupts(CompatCase):
    """Ctrl-C interrupts the current test as under unittest (with -c: after it);
    SIGTERM exits 143. Either way every node is stopped, the summary printed,
    and the exit status says the run was interrupted."""

    sample_name = "interrupt"

    def interrupt(self, signum, *args, module="disttest"):
        proc, full_args, meta = self.sample.start(*args, module=module,
                                                  env={"SAMPLE_SLEEP": "1.0"})
        markers = self.sample.path("markers.txt")
        deadline = time.monotonic() + 30
        while not (markers.exists() and "started" in markers.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                self.fail(f"the cluster test never started: {proc.communicate()}")
            time.sleep(0.01)
        proc.send_signal(signum)
        run = self.sample.finish(proc, full_args, meta)
        run.markers = self.sample.read_lines("markers.txt")
        return run

    def test_ctrl_c_with_c_stops_after_the_current_test(self):
        ours = self.interrupt(signal.SIGINT, "-v", "-c")
        theirs = self.interrupt(signal.SIGINT, "-v", "-c", module="unittest")
        for run in (ours, theirs):
            self.assertIn("slept", run.markers, "the current test was not let finish")
            self.assertNotIn("test_2_after", run.markers)
            self.assertNotIn("test_3_later", run.markers)
            self.assertEqual(len(run.agents), 2)
        # unittest -c calls an interrupted run a success (exit 0); disttest does
        # not, so an interrupted CI job never looks green.
        self.assertEqual(theirs.returncode, 0, theirs)
        self.assertEqual(ours.returncode, 130, ours)
        self.assertEqual(ours.counts(), {"run": 2, "status": "FAILED"})  # plain test + current
        self.assertIn("Cluster usage", ours.stderr)
        self.assertIn(f"{described('tests.test_sleepy.Sleepy.test_1_sleeps')} [cluster",
                      ours.stderr)
        self.assertIn("disttest: run interrupted by Ctrl-C (SIGINT) after "
                      "tests.test_sleepy.Sleepy.test_1_sleeps (it ran to its end); "
                      "2 test(s) ran; exit status 130", ours.stderr)

    def test_ctrl_c_interrupts_the_current_test_as_unittest_does(self):
        ours = self.interrupt(signal.SIGINT, "-v")
        theirs = self.interrupt(signal.SIGINT, "-v", module="unittest")
        for run in (ours, theirs):
            self.assertNotIn("slept", run.markers, "the current test was let finish")
            self.assertNotIn("test_3_later", run.markers)
            self.assertEqual(len(run.agents), 2)
        # unittest dies of the KeyboardInterrupt with a traceback and nothing
        # else; disttest exits 130 after printing what ran.
        self.assertNotEqual(theirs.returncode, 0, theirs)
        self.assertIn("KeyboardInterrupt", theirs.stderr)
        self.assertEqual(ours.returncode, 130, ours)
        self.assertNotIn("Traceback", ours.stderr)
        self.assertEqual(ours.counts(), {"run": 2, "status": "FAILED"})
        self.assertIn("disttest: run interrupted by Ctrl-C (SIGINT) during "
                      "tests.test_sleepy.Sleepy.test_1_sleeps; 2 test(s) ran; "
                      "exit status 130", ours.stderr)

    def test_sigterm_exits_143_and_stops_every_node(self):
        run = self.interrupt(signal.SIGTERM, "-v", "--json-report",
                             str(self.sample.path("term.json")))
        self.assertEqual(run.returncode, 128 + signal.SIGTERM, run)
        self.assertNotIn("slept", run.markers)
        self.assertEqual(len(run.agents), 2)
        self.assertIn("Cluster usage", run.stderr)
        self.assertIn("1 interrupted", run.stderr)
        report = json.loads(self.sample.path("term.json").read_text())
        outcomes = {t["name"]: t["outcome"] for t in report["tests"]}
        self.assertEqual(outcomes, {"test_4_plain": "passed", "test_1_sleeps": "interrupted"})
        self.assertFalse(report["successful"])


# unittest's own tests: Lib/unittest/test up to Python 3.11, Lib/test/test_unittest since.
UNITTEST_TESTS = next((d for d in (STDLIB / "unittest" / "test", STDLIB / "test" / "test_unittest")
                       if d.is_dir()), None)


class CPythonSuites(unittest.TestCase):
    """CPython's own tests, once under each runner."""

    def setUp(self):
        self.sample = Sample(self.addCleanup, "empty")

    def compare(self, *args, timeout=120):
        ours = self.sample.run(*args, timeout=timeout)
        theirs = self.sample.run(*args, module="unittest", timeout=timeout)
        self.assertEqual(ours.returncode, theirs.returncode, ours)
        self.assertEqual(result_counts(ours.stderr), result_counts(theirs.stderr))
        self.assertEqual(ours.agents, [])
        return ours

    @unittest.skipIf(UNITTEST_TESTS is None, "this Python was installed without its tests")
    def test_unittest_test_suite(self):
        ours = self.compare("discover", "-s", str(UNITTEST_TESTS), "-t", str(STDLIB))
        self.assertGreater(ours.counts()["run"], 500)
        self.assertEqual(ours.counts()["status"], "OK")

    @unittest.skipUnless((STDLIB / "test" / "test_json").is_dir(), "no test.test_json")
    def test_json_test_suite(self):
        ours = self.compare("test.test_json")
        self.assertGreater(ours.counts()["run"], 100)


if __name__ == "__main__":
    unittest.main()
