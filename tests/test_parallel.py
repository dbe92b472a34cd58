"""``-j N``: one plan run on several worker processes, with one report.

End to end on ``tests/samples/parallel`` (cluster classes that share a growing
cluster, one with its own requirement, one that may fail, one that may kill
its worker, plain classes under module and class fixtures) and on the plain
``compat`` sample against ``python -m unittest``; the scheduler's cuts are
checked directly on plans of real test classes.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil

import disttest
from disttest.errors import ConfigError
from disttest.parallel import schedule
from disttest.planner import plan as make_plan
from disttest.requirements import Requirement
from tests import support
from tests.test_runner_e2e import Sample, described, normalize

ALL_TESTS = {
    "tests.test_groups.SmallShared.test_a", "tests.test_groups.SmallShared.test_b",
    "tests.test_groups.BigShared.test_a", "tests.test_groups.BigShared.test_b",
    "tests.test_groups.OwnEnv.test_a", "tests.test_groups.OwnEnv.test_b",
    "tests.test_groups.MayFail.test_a_fails", "tests.test_groups.MayFail.test_b",
    "tests.test_fixtures.First.test_one", "tests.test_fixtures.First.test_two",
    "tests.test_fixtures.Second.test_one", "tests.test_plain.PlainA.test_one",
    "tests.test_plain.PlainA.test_two", "tests.test_plain.PlainB.test_one",
    "tests.test_crash.Crashy.test_1_before", "tests.test_crash.Crashy.test_2_dies",
    "tests.test_crash.Crashy.test_3_after",
}
VERBOSE_LINE = re.compile(r"^(\w+) \(([\w.]+)\)(?: \[cluster w\d+-c\d+-[0-9a-f]{4}\])? \.\.\. "
                          r"(ok|FAIL|ERROR)$")


def markers(sample: Sample) -> list[list[str]]:
    return [line.split() for line in sample.read_lines("markers.txt")]


def tests_ran(sample: Sample) -> dict[str, tuple[int, str | None]]:
    """test id -> (pid of the process that ran it, cluster id or None)."""
    ran = {}
    for words in markers(sample):
        if words[0] == "test":
            ran[words[1]] = (int(words[2]), words[3] if len(words) > 3 else None)
    return ran


def assert_no_worker_leftovers(testcase: unittest.TestCase, pids) -> None:
    """No worker process alive and no port lock held under a worker's pid."""
    def left() -> list:
        return ([p for p in pids if not support.gone(p)]
                + [str(path) for p in pids for path in support.our_lock_files(pid=p)])

    if not support.wait_for(lambda: not left(), timeout=10):
        testcase.fail(f"left behind by the workers: {left()}")


class ParallelRun(unittest.TestCase):
    """One ``-j 3 -v`` run with a failure, its report and JUnit file."""

    @classmethod
    def setUpClass(cls):
        cls.sample = Sample(cls.addClassCleanup, "parallel")
        junit = cls.sample.path("junit.xml")
        cls.run_ = cls.sample.run("discover", "-j", "3", "-v", "--junit-xml", str(junit),
                                  report=True, env={"SAMPLE_FAIL": "1", "SAMPLE_SLEEP": "0.2"})
        cls.ran = tests_ran(cls.sample)
        cls.junit = ET.parse(junit)

    def test_every_test_ran_once_and_the_status_is_the_runs(self):
        self.assertEqual(set(self.ran), ALL_TESTS, self.run_)
        lines = [w[1] for w in markers(self.sample) if w[0] == "test"]
        self.assertEqual(len(lines), len(set(lines)))
        self.assertEqual(self.run_.counts(), {"run": 17, "status": "FAILED", "failures": 1})
        self.assertEqual(self.run_.returncode, 1)
        self.assertIn(f"FAIL: {described('tests.test_groups.MayFail.test_a_fails')}",
                      self.run_.stderr)
        self.assertIn("AssertionError: failed on purpose", self.run_.stderr)

    def test_work_is_spread_over_workers(self):
        pids = {pid for pid, _ in self.ran.values()}
        self.assertGreater(len(pids), 1, self.run_)
        self.assertNotIn(self.run_.pid, pids)  # the controller runs no test itself
        assert_no_worker_leftovers(self, pids)

    def test_classes_sharing_a_cluster_stay_together(self):
        shared = [self.ran[t] for t in ALL_TESTS if ".SmallShared." in t or ".BigShared." in t]
        self.assertEqual(len(set(shared)), 1, shared)  # one worker, one (grown) cluster
        for cls in ("OwnEnv", "MayFail", "Crashy"):
            seen = {where for t, where in self.ran.items() if f".{cls}." in t}
            self.assertEqual(len(seen), 1, (cls, seen))

    def test_module_and_class_fixtures_run_once_around_their_tests(self):
        rows = [w for w in markers(self.sample)
                if w[0] == "fixture" or w[1].startswith("tests.test_fixtures.")]
        names = [w[1] for w in rows]
        self.assertEqual(names[0], "setUpModule")
        self.assertEqual(names[-1], "tearDownModule")
        self.assertEqual(names.count("setUpClass-First"), 1)
        self.assertEqual(names.count("tearDownClass-First"), 1)
        self.assertLess(names.index("tests.test_fixtures.First.test_two"),
                        names.index("tearDownClass-First"))
        self.assertEqual(len({w[2] for w in rows}), 1)  # all in one worker

    def test_verbose_lines_are_whole(self):
        lines = [line for line in self.run_.stderr.splitlines() if " ... " in line]
        self.assertEqual(len(lines), 17, self.run_.stderr)
        for line in lines:
            self.assertRegex(line, VERBOSE_LINE)

    def test_one_summary_and_one_report(self):
        self.assertEqual(self.run_.stderr.count("Cluster usage"), 1)
        self.assertEqual(len(re.findall(r"(?m)^Ran \d+ tests", self.run_.stderr)), 1)
        self.assertIn("summed over 3 workers", self.run_.stderr)
        report = self.run_.report
        self.assertEqual(report["workers"], 3)
        self.assertEqual({t["id"] for t in report["tests"]}, ALL_TESTS)
        outcomes = {t["id"]: t["outcome"] for t in report["tests"]}
        self.assertEqual(outcomes.pop("tests.test_groups.MayFail.test_a_fails"), "failed")
        self.assertEqual(set(outcomes.values()), {"passed"})
        durations = {t["id"]: t["duration_s"] for t in report["tests"]}
        self.assertGreaterEqual(durations["tests.test_plain.PlainA.test_one"], 0.2)
        # each cluster test names its worker's cluster, and every cluster is in the report
        clusters = {c["id"] for c in report["clusters"]}
        self.assertEqual({c for _, c in self.ran.values() if c}, clusters)
        cases = self.junit.getroot().iter("testcase")
        self.assertEqual(len(list(cases)), 17)

    def test_history_is_recorded_for_the_next_run(self):
        paths = list((self.sample.state / "durations").glob("*.json"))
        self.assertEqual(len(paths), 1)
        self.assertIn("tests.test_groups.SmallShared", paths[0].read_text())


class ParallelFaults(unittest.TestCase):

    def setUp(self):
        self.sample = Sample(self.addCleanup, "parallel")

    def test_a_dying_worker_is_an_error_and_the_rest_runs_elsewhere(self):
        run = self.sample.run("discover", "-j", "2", env={"SAMPLE_CRASH": "1"})
        ran = tests_ran(self.sample)
        self.assertEqual(set(ran), ALL_TESTS, run)
        self.assertEqual(run.counts(), {"run": 17, "status": "FAILED", "errors": 1})
        self.assertEqual(run.returncode, 1)
        self.assertIn(f"ERROR: {described('tests.test_crash.Crashy.test_2_dies')}", run.stderr)
        self.assertRegex(run.stderr, r"disttest worker \d+ \(pid \d+\) was killed by SIGKILL "
                                     r"while this test was running")
        dead = ran["tests.test_crash.Crashy.test_2_dies"][0]
        self.assertNotEqual(ran["tests.test_crash.Crashy.test_3_after"][0], dead)
        nodes = next(w[1:-1] for w in markers(self.sample) if w[0] == "nodes")
        self.assertTrue(support.wait_for(lambda: all(support.gone(int(p)) for p in nodes), 10))
        assert_no_worker_leftovers(self, {pid for pid, _ in ran.values()})

    def test_failfast_stops_every_worker(self):
        run = self.sample.run("discover", "-j", "2", "-f",
                              env={"SAMPLE_FAIL": "1", "SAMPLE_SLEEP": "0.3"})
        self.assertEqual(run.returncode, 1, run)
        self.assertLess(run.counts()["run"], 17)
        tests = [w[1] for w in markers(self.sample) if w[0] == "test"]
        self.assertNotIn("tests.test_groups.MayFail.test_b", tests)
        after = tests[tests.index("tests.test_groups.MayFail.test_a_fails") + 1:]
        # At most what the other worker was running, or starting before STOP reached it.
        self.assertLessEqual(len(after), 2, tests)

    def _start_sleeping(self, *options, sleep: str = "60"):
        """A ``-j 2`` run with both workers inside a test that sleeps ``sleep`` s;
        (process, args, meta, worker pids, node pids)."""
        proc, args, meta = self.sample.start("-j", "2", *options, "tests.test_groups",
                                             env={"SAMPLE_SLEEP": sleep})
        self.addCleanup(proc.kill)
        if not support.wait_for(lambda: len(tests_ran(self.sample)) >= 2, timeout=60):
            proc.kill()
            self.fail(f"two tests did not start: {proc.communicate()}")
        workers = {pid for pid, _ in tests_ran(self.sample).values()}
        nodes = [child.pid for pid in workers for child in psutil.Process(pid).children()]
        self.assertTrue(nodes)
        return proc, args, meta, workers, nodes

    def _assert_all_gone(self, workers, nodes) -> None:
        self.assertTrue(support.wait_for(
            lambda: all(support.gone(p) for p in [*workers, *nodes]), timeout=30),
            [p for p in [*workers, *nodes] if not support.gone(p)])
        assert_no_worker_leftovers(self, workers)

    def test_sigterm_stops_every_worker_and_cluster(self):
        proc, args, meta, workers, nodes = self._start_sleeping()
        proc.send_signal(signal.SIGTERM)
        run = self.sample.finish(proc, args, meta, timeout=60)
        self.assertEqual(run.returncode, 128 + signal.SIGTERM, run)
        self._assert_all_gone(workers, nodes)

    def test_sigkill_of_the_runner_stops_every_worker_and_cluster(self):
        proc, args, meta, workers, nodes = self._start_sleeping()
        proc.kill()
        proc.communicate(timeout=30)
        self._assert_all_gone(workers, nodes)

    def test_ctrl_c_interrupts_every_worker_and_reports_what_ran(self):
        proc, args, meta, workers, nodes = self._start_sleeping()
        proc.send_signal(signal.SIGINT)
        run = self.sample.finish(proc, args, meta, timeout=60)
        self.assertEqual(run.returncode, 130, run)
        self.assertRegex(run.stderr, r"(?m)^Ran 2 tests in ")
        self.assertIn("disttest: run interrupted by Ctrl-C (SIGINT)", run.stderr)
        self.assertIn("Cluster usage", run.stderr)
        self._assert_all_gone(workers, nodes)
        # partial durations would mislead the next run: none are recorded
        self.assertFalse(list((self.sample.state / "durations").glob("*.json")))

    def test_ctrl_c_with_catch_lets_running_tests_finish(self):
        proc, args, meta, workers, nodes = self._start_sleeping("-c", sleep="5")
        proc.send_signal(signal.SIGINT)
        run = self.sample.finish(proc, args, meta, timeout=60)
        self.assertEqual(run.returncode, 130, run)
        self.assertEqual(run.counts()["run"], 2)  # the two running ones, and no other
        self.assertEqual(len(tests_ran(self.sample)), 2)
        self.assertNotIn(" ... ERROR", run.stderr)
        self._assert_all_gone(workers, nodes)


class ParallelOptions(unittest.TestCase):

    def setUp(self):
        self.sample = Sample(self.addCleanup, "parallel")

    def test_bad_jobs_value_is_refused(self):
        for value in ("0", "many", "-2"):
            with self.subTest(value):
                run = self.sample.run("discover", "-j", value)
                self.assertEqual(run.returncode, 2)
                self.assertIn(f"'{value}' is not allowed; --jobs must be", run.stderr)
                self.assertNotIn("Traceback", run.stderr)

    def test_no_fork_is_a_clear_error(self):
        code = ("import os, runpy, sys; del os.fork; "
                "sys.argv = ['disttest', '-j', '2', 'tests.test_plain', 'tests.test_fixtures']; "
                "runpy.run_module('disttest', run_name='__main__', alter_sys=True)")
        run = self.sample.run("-c", code, module=None)
        self.assertEqual(run.returncode, 1, run)
        self.assertIn("-j 2 needs os.fork, which this platform lacks", run.stderr)
        self.assertNotIn("Traceback", run.stderr)

    def test_plan_shows_the_work_items(self):
        run = self.sample.run("discover", "--plan", "-j", "4")
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stdout, r"-j 4: \d+ work item\(s\), longest first")
        self.assertEqual(tests_ran(self.sample), {})

    def test_shard_then_parallel(self):
        self.sample.run("discover", "--shard", "1/2")
        serial = set(tests_ran(self.sample))
        run = self.sample.run("discover", "--shard", "1/2", "-j", "2")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(set(tests_ran(self.sample)), serial)
        self.assertLess(len(serial), len(ALL_TESTS))

    def test_strict_cleanup_sees_a_leak_in_a_worker(self):
        run = self.sample.run("-j", "2", "--strict-cleanup", "tests.test_groups", report=True,
                              env={"SAMPLE_LEAK": "1"})
        [child] = [int(w[1]) for w in markers(self.sample) if w[0] == "child"]
        self.addCleanup(_kill_sleeper, child)
        self.assertEqual(run.returncode, 1, run)
        self.assertIn("disttest cleanup check (--strict-cleanup)", run.stderr)
        [leak] = run.report["leaks"]
        self.assertEqual(leak["pids"], [child])
        self.assertTrue(support.wait_for(lambda: support.gone(child), 5))

    def test_kept_clusters_serve_the_next_parallel_run(self):
        self.addCleanup(self.sample.run, "cluster", "stop", "--all")  # if a check fails
        # (started by hand: the kept nodes are meant to outlive this run)
        proc, _args, meta = self.sample.start("-j", "2", "--keep-cluster", "tests.test_groups",
                                              report=True)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, err)
        # A kept node's process is let go on purpose: no "still running" warning.
        self.assertNotIn("ResourceWarning", err)
        report = json.loads(meta["report"].read_text())
        kept = {c["id"] for c in report["clusters"] if c["kept"]}
        self.assertEqual(len(kept), 3, report["clusters"])  # one per chain
        second = self.sample.run("-j", "2", "tests.test_groups", report=True)
        self.assertEqual(second.returncode, 0, second)
        reused = [c["id"] for c in second.report["clusters"] if c["reused_from_previous_run"]]
        self.assertEqual(len(reused), len(set(reused)))  # never lent to two workers
        self.assertEqual(set(reused), kept, second.report["clusters"])
        # Nothing else starts, unless the schedule splits the growing chain across
        # the two workers (cheap starts make that pay): at most one more start then.
        self.assertLessEqual(second.report["cluster_starts"], 1, second.report["clusters"])
        self.assertFalse(list((self.sample.state / "clusters").glob("*.json")))

    def test_network_modes(self):
        """The example suite (direct and proxy clusters) under -j."""
        sample_root = Path(support.REPO) / "examples"
        run = subprocess.run([sys.executable, "-m", "disttest", "discover", "-j", "2",
                              "-s", ".", "-t", "."], cwd=sample_root, capture_output=True,
                             text=True, env=self.sample.env(), timeout=300)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("network proxy", run.stderr)
        self.assertRegex(run.stderr, r"(?m)^Ran \d+ tests in .*\n\nOK$")

    def test_ci_log_shows_the_node_logs_of_a_failing_class(self):
        run = self.sample.run("-j", "2", "tests.test_groups",
                              env={"SAMPLE_FAIL": "1", "CI": "true"})
        self.assertEqual(run.returncode, 1, run)
        self.assertRegex(run.stderr, r"---- node-0 log \(cluster w\d+-c\d+-[0-9a-f]{4}\) for "
                                     r"failing tests\.test_groups\.MayFail ----")
        self.assertNotIn("internal error", run.output)

    def test_simulate_and_strict_cleanup(self):
        run = self.sample.run("-j", "2", "--simulate", "--strict-cleanup", "tests.test_groups",
                              report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertTrue(all(c["simulated"] for c in run.report["clusters"]), run.report)
        self.assertEqual(run.counts()["run"], 8)


class PlainSuiteLikeUnittest(unittest.TestCase):
    """A plain suite under ``-j``: unittest's counts, outcomes and fixtures."""

    def test_compat_sample(self):
        sample = Sample(self.addCleanup, "compat")
        for extra in ((), ("-v",)):
            with self.subTest(extra):
                ours = sample.run("-j", "2", *extra)
                ours_markers = sample.read_lines("markers.txt")
                theirs = sample.run(*extra, module="unittest")
                self.assertEqual(ours.counts(), theirs.counts())
                self.assertEqual(ours.returncode, theirs.returncode)
                self.assertEqual(sorted(ours_markers), sorted(sample.read_lines("markers.txt")))
                self.assertEqual(_failure_blocks(ours.stderr), _failure_blocks(theirs.stderr))


def _kill_sleeper(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        if proc.cmdline() == ["sleep", "60"]:
            proc.kill()
    except psutil.Error:
        pass


def _failure_blocks(stderr: str) -> list[str]:
    """unittest's failure reports, each whole, in a stable order."""
    text = normalize(stderr).split("\n----------------------------------------------------"
                                   "------------------\nRan ")[0]
    blocks = text.split("=" * 70 + "\n")[1:]
    return sorted(blocks)


# -- the scheduler, on plans of real classes ----------------------------------------------
def _classes(sizes: list[int], env: str = "") -> list[type]:
    made = []
    for number, size in enumerate(sizes):
        made.append(type(f"Sized{env}{number}", (disttest.DistributedTestCase,),
                         {"cluster_size": size, "node_env": {"G": env} if env else {},
                          "test_a": lambda self: None, "test_b": lambda self: None,
                          "__module__": __name__}))
    return made


def _plan(classes: list[type]):
    loader = unittest.TestLoader()
    tests = [t for cls in classes for t in loader.loadTestsFromTestCase(cls)]
    return make_plan(tests, lambda cls, methods: Requirement(
        cls.cluster_size, env=tuple(sorted(cls.node_env.items()))))


class Scheduling(unittest.TestCase):

    def test_one_growing_cluster_is_split_across_workers(self):
        plan = _plan(_classes([1, 2, 3, 4] * 4))
        self.assertEqual(plan.cluster_starts, 1)
        items = schedule.make_items(plan, 4)
        self.assertEqual(len(items), 4)
        self.assertEqual(sum(i.starts for i in items), 4)  # 3 more than one job needs
        units = schedule.all_units(plan)
        for item in items:
            sizes = [units[u].requirement.size for u, _ in item.parts]
            self.assertEqual(sizes, sorted(sizes))  # each part still grows as planned
        self.assertEqual(sorted(u for i in items for u, _ in i.parts), list(range(16)))

    def test_one_job_keeps_the_plan(self):
        plan = _plan(_classes([1, 2, 3, 4] * 4))
        (item,) = schedule.make_items(plan, 1)
        units = schedule.all_units(plan)
        self.assertEqual([units[u] for u, _ in item.parts],
                         [u for g in plan.groups for u in g.units])

    def test_independent_groups_are_not_split(self):
        plan = _plan(_classes([2, 2], "x") + _classes([2, 2], "y"))
        items = schedule.make_items(plan, 2)
        self.assertEqual(len(items), 2)
        self.assertEqual(sum(i.starts for i in items), plan.cluster_starts)

    def test_longest_first_from_the_history(self):
        classes = _classes([2], "short") + _classes([2], "long") + _classes([2], "mid")
        plan = _plan(classes)
        history = {"classes": {f"{__name__}.{c.__qualname__}": s
                               for c, s in zip(classes, (1.0, 9.0, 4.0))}}
        items = schedule.make_items(plan, 2, history)
        self.assertEqual([i.label for i in items],
                         [f"{__name__}.{c.__qualname__}" for c in (classes[1], classes[2],
                                                                    classes[0])])

    def test_a_class_the_history_does_not_know_weighs_its_mean_per_test(self):
        classes = _classes([2], "known") + _classes([2], "slow") + _classes([2], "new")
        history = {"classes": {f"{__name__}.{classes[0].__qualname__}": 1.0,
                               f"{__name__}.{classes[1].__qualname__}": 9.0}}
        items = schedule.make_items(_plan(classes), 2, history)
        weights = {i.label.rsplit(".", 1)[1]: round(i.weight, 2) for i in items}
        # 10 s over 4 known tests: the new class's 2 tests weigh 5 s (+ a start)
        self.assertEqual(weights, {"Sizedslow0": 9.1, "Sizednew0": 5.1, "Sizedknown0": 1.1})

    def test_jobs_values(self):
        self.assertEqual(schedule.parse_jobs("3"), 3)
        self.assertEqual(schedule.parse_jobs("auto"), "auto")
        for bad in ("0", "-1", "x", ""):
            with self.subTest(bad), self.assertRaises(ConfigError):
                schedule.parse_jobs(bad)
        auto = schedule.resolve_jobs("auto", _plan(_classes([3])))
        self.assertGreaterEqual(auto, 1)
        self.assertLessEqual(auto, len(psutil.Process().cpu_affinity()))

    def test_makespan(self):
        self.assertEqual(schedule.makespan([4, 3, 3, 2], 2), 6)
        self.assertEqual(schedule.makespan([5], 4), 5)


if __name__ == "__main__":
    unittest.main()
