"""Clean-up proven from the outside: what a ``python -m disttest`` run leaves.

After an ordinary run no node process, port lock or cluster temporary
directory of the run is left; a node's child that outlives the node is found,
killed and reported as a leak (``--strict-cleanup`` fails the run on it); and
``--save-cluster-logs`` keeps the node logs that are otherwise removed.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import psutil

from tests import support
from tests.samples_lifecycle.harness import (Project, Run, alive, assert_left_nothing,
                                             leftovers, report_pids)


def _kill_sleeper(pid: int) -> None:
    """After a failed test: the sample's ``sleep 60`` must not outlive it."""
    try:
        if psutil.Process(pid).name() == "sleep":
            os.kill(pid, signal.SIGKILL)
    except (psutil.Error, OSError):
        pass


class OrdinaryRuns(unittest.TestCase):

    def test_a_run_leaves_no_node_lock_or_temp_dir(self):
        project = Project(self, "keep")
        run = project.run(report=True)
        self.assertEqual(run.returncode, 0, run)
        pids = report_pids(run.report)
        self.assertEqual(sorted(pids), sorted(map(int, project.marker("pids"))))
        [cluster_id] = run.cluster_ids()
        assert_left_nothing(self, run, pids)
        self.assertEqual(run.report["leaks"], [])
        self.assertNotIn("leak", run.stderr)
        self.assertEqual(project.records(), [])  # nothing kept

    def test_the_leak_check_sees_what_a_run_leaves(self):
        # The check above would see a leftover: a run killed before it could
        # stop its cluster leaves its temp dir and port locks (its nodes end).
        project = Project(self, "sleepy")
        started = time.time()
        proc = project.popen()
        self.addCleanup(proc.kill)
        pids = [int(pid) for pid in project.wait_marker("started", proc)]
        proc.kill()
        stdout, stderr = proc.communicate()
        run = Run([], proc.pid, proc.returncode, stdout, stderr, started)
        self.addCleanup(support.remove_dead_locks, proc.pid)
        for directory in support.our_temp_dirs(run.cluster_ids()):
            self.addCleanup(shutil.rmtree, directory, True)
        self.assertTrue(support.wait_for(lambda: not alive(pids), timeout=10))
        found = leftovers(run, pids)
        self.assertEqual(sorted(found), ["port locks", "temp dirs"], found)
        self.assertEqual(len(found["temp dirs"]), 2)
        self.assertEqual(len(found["port locks"]), 3)


class Leaks(unittest.TestCase):

    def run_leaky(self, *args):
        project = Project(self, "leaky")
        run = project.run(*args, report=True)
        [child] = map(int, project.marker("child"))
        self.addCleanup(_kill_sleeper, child)
        return project, run, child

    def assert_leak_reported_and_killed(self, run, child: int) -> None:
        self.assertTrue(support.gone(child), f"the node's child {child} is still running")
        [leak] = run.report["leaks"]
        self.assertEqual(leak["what"], "process")
        self.assertEqual(leak["pids"], [child])
        [cluster] = run.report["clusters"]
        self.assertEqual(leak["cluster"], cluster["id"])
        self.assertRegex(run.stderr, rf"(?m)^  leak: 1 child process\(es\) of nodes outlived "
                                     rf"them and were killed \(cluster {cluster['id']}\)$")
        assert_left_nothing(self, run, report_pids(run.report) + [child])

    def test_a_child_that_outlives_its_node_is_killed_and_reported(self):
        _project, run, child = self.run_leaky()
        self.assertEqual(run.returncode, 0, run)  # a leak alone does not fail the run
        self.assertTrue(run.report["successful"])
        self.assertNotIn("disttest cleanup check", run.stderr)
        self.assert_leak_reported_and_killed(run, child)

    def test_strict_cleanup_fails_the_run_on_a_leak(self):
        _project, run, child = self.run_leaky("--strict-cleanup")
        self.assert_leak_reported_and_killed(run, child)
        self.assertEqual(run.returncode, 1, run)
        self.assertIn("disttest cleanup check", run.stderr)
        self.assertFalse(run.report["successful"])

    def test_strict_cleanup_passes_a_clean_run(self):
        project = Project(self, "keep")
        run = project.run("--strict-cleanup", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertNotIn("disttest cleanup check", run.stderr)
        self.assertEqual(run.report["leaks"], [])


class LeakCheckOfTheSuite(unittest.TestCase):
    """The suite's own leak check blames a run only for what is really its."""

    def test_a_lock_held_by_a_process_that_reused_a_runs_pid_is_not_the_runs(self):
        lock_dir = Path(tempfile.mkdtemp(prefix="disttest-tests-locks-"))
        self.addCleanup(shutil.rmtree, lock_dir)
        ended = support.run_python("import os; print(os.getpid())")
        pid = int(ended.stdout)  # a run that has ended; its pid may be given again
        lock = lock_dir / "28964.lock"
        lock.write_text(f"{pid}\n")
        self.assertEqual(support.our_lock_files(lock_dir, pid), [lock], "a lock file it left")
        holder = support.popen_python(
            "import fcntl, os, sys\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(holder.stdout.close)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.stdin.close)
        self.assertEqual(holder.stdout.readline().strip(), "held")
        self.assertEqual(support.our_lock_files(lock_dir, pid), [],
                         "a lock held now is held by whoever has the pid now")
        self.assertEqual(support.our_lock_files(lock_dir, os.getpid()), [])


class SavedLogs(unittest.TestCase):

    def test_save_cluster_logs_keeps_each_nodes_log(self):
        project = Project(self, "keep")
        target = project.tmp / "saved"
        run = project.run("--save-cluster-logs", target, report=True)
        self.assertEqual(run.returncode, 0, run)
        [cluster_id] = run.cluster_ids()
        [run_dir] = target.glob("run-*")
        logs = sorted((run_dir / cluster_id).glob("*.log"))
        self.assertEqual([p.name for p in logs], ["node-0.log", "node-1.log"])
        pids = sorted(map(int, project.marker("pids")))
        for index, log in enumerate(logs):
            self.assertRegex(log.read_text(), rf"node node-{index} of cluster {cluster_id} "
                                              rf"\(pid ({'|'.join(map(str, pids))})\)")
        self.assertIn(f"node logs saved in: {run_dir / cluster_id}", run.stderr)
        # The copies are kept; the cluster's own directory is not.
        assert_left_nothing(self, run, pids)

    def test_without_it_the_logs_go_with_the_cluster(self):
        project = Project(self, "keep")
        run = project.run()
        self.assertEqual(run.returncode, 0, run)
        [cluster_id] = run.cluster_ids()
        self.assertNotIn("node logs saved", run.stderr)
        self.assertEqual(list(Path(tempfile.gettempdir()).glob(f"disttest-{cluster_id}-*")), [])
        self.assertEqual(list(project.tmp.rglob("run-*")), [])


if __name__ == "__main__":
    unittest.main()
