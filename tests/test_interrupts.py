"""Interrupted runs stop every cluster: Ctrl-C (once, twice), SIGTERM, SIGHUP,
SIGKILL, and an exception raised inside the runner in the middle of a run.

The ``sleepy`` sample's first test has two clusters up (its class's and one
it starts by hand) when it writes its ``started`` marker; the signal is sent
then. Each test checks the process table afterwards: no node of the run may
be left 2 seconds after the runner ended.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import unittest

from tests import support
from tests.samples_lifecycle.harness import (Project, Run, agents_since, alive,
                                             assert_left_nothing)


class Interrupts(unittest.TestCase):

    def start(self, sleep: float, *args, **popen_kwargs) -> tuple[subprocess.Popen, float, list]:
        """Run the sleepy sample with ``-v``; return (process, start time, node pids)
        once its first test is running with both clusters up."""
        self.project = Project(self, "sleepy")
        started = time.time()
        proc = self.project.popen("-v", *args, env={"SAMPLE_SLEEP": str(sleep)},
                                  **popen_kwargs)
        self.addCleanup(proc.kill)
        pids = [int(pid) for pid in self.project.wait_marker("started", proc)]
        self.assertEqual(len(pids), 3)
        self.cluster_ids = self.project.marker("clusters")
        return proc, started, pids

    def finish(self, proc: subprocess.Popen, started: float) -> Run:
        return self.project.finish(proc, ["-v"], started, timeout=30)

    def assert_every_cluster_stopped(self, run: Run, pids: list[int]) -> None:
        """Both clusters reported stopped, and nothing of them left (2 s at most)."""
        for cluster_id in self.cluster_ids:
            self.assertIn(f"cluster {cluster_id} stopped", run.stderr)
        assert_left_nothing(self, run, pids, cluster_ids=self.cluster_ids, wait=10.0)

    def assert_interrupted(self, run: Run, signum: int, where: str, ran: int) -> None:
        """unittest's closing lines for the tests that ran, then the interruption line."""
        self.assertEqual(run.returncode, 128 + signum, run)
        self.assertRegex(run.stderr, rf"(?m)^Ran {ran} tests? in ")
        self.assertRegex(run.stderr, r"(?m)^FAILED")
        self.assertIn("Cluster usage", run.stderr)
        name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
        self.assertIn(f"disttest: run interrupted by {name} {where}Sleepy.test_1_sleeps",
                      run.stderr)
        self.assertTrue(run.stderr.rstrip().endswith(f"exit status {128 + signum}"), run)
        self.assertNotIn("Traceback", run.stderr)

    def test_ctrl_c_interrupts_the_current_test(self):
        # As under python -m unittest (no -c): the running test is cut short.
        proc, started, pids = self.start(30.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        run = self.finish(proc, started)
        self.assertLess(time.monotonic() - sent, 10, "did not stop at once")
        self.assertNotIn("slept", self.project.marker_lines())
        self.assert_interrupted(run, signal.SIGINT, "during tests.test_sleepy.", ran=1)
        self.assert_every_cluster_stopped(run, pids)

    def start_with_notices(self, sleep: float, *args) -> tuple:
        """Like start(), with stderr in a file that can be read while the run goes on."""
        errors = open(self.project_tmp() / "stderr.txt", "w+")
        self.addCleanup(errors.close)
        proc, started, pids = self.start(sleep, "-c", *args, stderr=errors)
        return proc, started, pids, errors

    def project_tmp(self):
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp(prefix="dtlc-notices-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def finish_with_notices(self, proc, started, errors) -> Run:
        run = self.finish(proc, started)
        errors.seek(0)
        run.stderr = errors.read()
        return run

    def wait_for_notice(self, errors, proc) -> None:
        notice = "disttest: Ctrl-C: stopping after the current test"

        def seen():
            errors.seek(0)
            return notice in errors.read() or proc.poll() is not None

        self.assertTrue(support.wait_for(seen, timeout=30), "no Ctrl-C notice")

    def test_ctrl_c_with_c_stops_after_the_current_test(self):
        proc, started, pids, errors = self.start_with_notices(1.0)
        proc.send_signal(signal.SIGINT)
        run = self.finish_with_notices(proc, started, errors)
        # The test running at Ctrl-C finished; the next one never started.
        self.assertEqual(self.project.marker_lines()[2:], ["slept"])
        self.assertIn("disttest: Ctrl-C: stopping after the current test", run.stderr)
        self.assertNotIn("test_2_after", run.stderr)
        self.assert_interrupted(run, signal.SIGINT, "after tests.test_sleepy.", ran=1)
        self.assert_every_cluster_stopped(run, pids)

    def test_ctrl_c_twice_with_c_interrupts_at_once(self):
        proc, started, pids, errors = self.start_with_notices(30.0)
        proc.send_signal(signal.SIGINT)
        self.wait_for_notice(errors, proc)  # the first one handled: the next is a second
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        run = self.finish_with_notices(proc, started, errors)
        self.assertLess(time.monotonic() - sent, 10, "did not stop at once")
        self.assertNotIn("slept", self.project.marker_lines())
        self.assert_interrupted(run, signal.SIGINT, "during tests.test_sleepy.", ran=1)
        self.assert_every_cluster_stopped(run, pids)

    def test_sigint_ignored_at_start_stays_ignored(self):
        # nohup and background jobs of a non-interactive shell start with SIGINT
        # ignored; unittest then runs to its end, and so must disttest (-c too).
        for args in ((), ("-c",)):
            with self.subTest(args=args):
                proc, started, pids = self.start(
                    1.0, *args, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
                proc.send_signal(signal.SIGINT)
                run = self.finish(proc, started)
                self.assertEqual(run.returncode, 0, run)
                self.assertIn("slept", self.project.marker_lines())
                self.assertRegex(run.stderr, r"(?m)^Ran 2 tests in ")
                self.assertNotIn("interrupted", run.stderr)

    def check_termination(self, signum: int) -> None:
        proc, started, pids = self.start(30.0, "--json-report", "report.json")
        sent = time.monotonic()
        proc.send_signal(signum)
        run = self.finish(proc, started)
        self.assertLess(time.monotonic() - sent, 10, "did not stop at once")
        self.assertNotIn("slept", self.project.marker_lines())
        self.assert_interrupted(run, signum, "during tests.test_sleepy.", ran=1)
        self.assertIn("1 interrupted", run.stderr)
        report = json.loads((self.project.root / "report.json").read_text())
        self.assertFalse(report["successful"])
        self.assertEqual([(t["name"], t["outcome"]) for t in report["tests"]],
                         [("test_1_sleeps", "interrupted")])
        self.assertEqual(sorted(c["id"] for c in report["clusters"]), sorted(self.cluster_ids))
        self.assert_every_cluster_stopped(run, pids)

    def test_sigterm_exits_143_after_stopping_every_cluster(self):
        self.check_termination(signal.SIGTERM)

    def test_sighup_exits_129_after_stopping_every_cluster(self):
        self.check_termination(signal.SIGHUP)

    def test_sigkill_of_the_runner_leaves_no_node(self):
        proc, started, pids = self.start(30.0)
        proc.kill()
        proc.communicate()
        # The runner had no chance to clean up: this is what the nodes do alone.
        self.addCleanup(support.remove_dead_locks, proc.pid)
        for directory in support.our_temp_dirs(self.cluster_ids):
            self.addCleanup(shutil.rmtree, directory, True)
        self.assertTrue(support.wait_for(lambda: not alive(pids), timeout=10.0),
                        f"nodes {alive(pids)} outlived the killed runner by 10s")
        self.assertEqual(agents_since(started), [])

    def test_an_exception_in_the_runner_still_stops_every_cluster(self):
        # The reader of the runner's output goes away mid-run (``... 2>&1 | head``):
        # the next line the runner writes raises BrokenPipeError inside
        # DistributedTestRunner.run, while both clusters are up.
        proc, started, pids = self.start(1.0)
        proc.stderr.close()
        with proc.stdout:
            stdout = proc.stdout.read()
        proc.wait(30)
        run = Run(["-v"], proc.pid, proc.returncode, stdout, "", started)
        self.assertEqual(run.returncode, 1, run)
        # The runner went no further than the line it could not write.
        self.assertEqual(self.project.marker_lines()[2:], ["slept"])
        # More than the nodes ending with their runner (a SIGKILL gets that
        # much): the runner stopped its clusters, their temp dirs and port
        # locks are gone too.
        assert_left_nothing(self, run, pids, cluster_ids=self.cluster_ids, wait=10.0)


if __name__ == "__main__":
    unittest.main()
