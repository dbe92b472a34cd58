"""Clusters kept between runs, end to end: ``--keep-cluster``, the idle TTL,
stale records, and ``python -m disttest cluster start|status|logs|stop|clean``.

Every run is a subprocess on a copy of a sample in ``tests/samples_lifecycle``
with a state directory (registry) of its own.
"""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
import unittest
from pathlib import Path

import psutil

from tests import support
from tests.samples_lifecycle.harness import (Project, alive, assert_left_nothing, locks_left,
                                             report_pids)


class KeepAndReuse(unittest.TestCase):

    def test_kept_nodes_outlive_the_run_and_serve_the_next_one(self):
        project = Project(self, "keep")
        first = project.run("--keep-cluster", report=True)
        self.assertEqual(first.returncode, 0, first)
        self.assertEqual(first.report["cluster_starts"], 1, first)
        self.assertIn("kept for the next run", first.stderr)
        [cluster] = first.report["clusters"]
        self.assertTrue(cluster["kept"])
        self.assertEqual(cluster["nodes"], [])  # nothing was stopped

        [record] = project.records()
        self.assertEqual(record["id"], cluster["id"])
        pids = [node["pid"] for node in record["nodes"]]
        self.assertEqual(sorted(pids), sorted(map(int, project.marker("pids"))))
        time.sleep(0.3)  # well after the runner's exit
        self.assertEqual(alive(pids), pids, "kept nodes ended with the run")
        # Each node took over its own port lock from the runner.
        self.assertTrue(support.wait_for(lambda: len(locks_left(record)) == 2, timeout=15),
                        locks_left(record))

        second = project.run(report=True)
        self.assertEqual(second.returncode, 0, second)
        self.assertEqual(second.report["cluster_starts"], 0, second)
        self.assertEqual(second.report["nodes_started"], 0, second)
        [reused] = second.report["clusters"]
        self.assertEqual(reused["id"], cluster["id"])
        self.assertTrue(reused["reused_from_previous_run"])
        self.assertEqual(sorted(report_pids(second.report)), sorted(pids))
        self.assertEqual(sorted(map(int, project.marker("pids"))), sorted(pids))
        self.assertIn("from a previous run", second.stderr)

        # Not kept again: stopped, record and port locks removed, logs gone.
        self.assertEqual(project.records(), [])
        assert_left_nothing(self, second, pids)
        self.assertEqual(locks_left(record), [])
        self.assertFalse(Path(record["tmpdir"]).exists())

    def test_records_are_private(self):
        project = Project(self, "keep")
        run = project.run("--keep-cluster")
        self.assertEqual(run.returncode, 0, run)
        [path] = project.record_paths()
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(path.parent.stat().st_mode), 0o700)
        self.assertEqual(len(json.loads(path.read_text())["key"]), 64)

    def test_idle_kept_cluster_ends_itself_after_the_ttl(self):
        project = Project(self, "keep")
        run = project.run("--keep-cluster", env={"DISTTEST_KEEP_CLUSTERS_TTL": "1"})
        self.assertEqual(run.returncode, 0, run)
        [record] = project.records()
        self.assertEqual(record["ttl"], 1.0)
        pids = [node["pid"] for node in record["nodes"]]
        kept_at = time.monotonic()
        self.assertEqual(alive(pids), pids)
        self.assertTrue(support.wait_for(lambda: len(locks_left(record)) == 2, timeout=15),
                        locks_left(record))  # each node holds its own

        self.assertTrue(support.wait_for(lambda: not alive(pids), timeout=30),
                        f"kept nodes {alive(pids)} still alive 30s after the run")
        self.assertGreater(time.monotonic() - kept_at, 0.5, "ended before the TTL")
        self.assertTrue(support.wait_for(lambda: not locks_left(record), timeout=15),
                        locks_left(record))
        self.assertEqual(project.records(), [])
        self.assertFalse(Path(record["tmpdir"]).exists(), "the kept cluster's logs were left")


class StaleRecords(unittest.TestCase):

    def keep(self) -> tuple[Project, dict]:
        project = Project(self, "keep")
        run = project.run("--keep-cluster")
        self.assertEqual(run.returncode, 0, run)
        [record] = project.records()
        return project, record

    def assert_replaced(self, project: Project, record: dict, reason: str) -> None:
        pids = [node["pid"] for node in record["nodes"]]
        run = project.run("-v", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stderr, rf"removed stale kept cluster {record['name']}: .*{reason}")
        self.assertEqual(run.report["cluster_starts"], 1, run)
        [fresh] = run.report["clusters"]
        self.assertNotEqual(fresh["id"], record["id"])
        self.assertFalse(fresh["reused_from_previous_run"])
        self.assertEqual(set(report_pids(run.report)) & set(pids), set())
        self.assertEqual(project.records(), [])
        assert_left_nothing(self, run, pids)
        self.assertFalse(Path(record["tmpdir"]).exists())
        self.assertEqual(locks_left(record), [])

    def test_a_kept_node_that_died_makes_the_record_stale(self):
        project, record = self.keep()
        victim = record["nodes"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        self.assertTrue(support.wait_for(lambda: support.gone(victim)))
        self.assert_replaced(project, record, rf"node node-0 \(pid {victim}\) is gone")

    def test_a_record_with_another_key_is_stale(self):
        project, record = self.keep()
        [path] = project.record_paths()
        record["key"] = "00" * 32
        path.write_text(json.dumps(record))
        self.assert_replaced(project, record, "does not answer the cluster key")


class ClusterCommand(unittest.TestCase):

    def test_start_status_logs_use_stop(self):
        project = Project(self, "keep")
        start = project.cluster("start", "--size", "3", "--name", "dev")
        self.assertEqual(start.returncode, 0, start)
        self.assertIn("cluster dev (", start.stdout)
        [record] = project.records()
        self.assertEqual(record["name"], "dev")
        pids = [node["pid"] for node in record["nodes"]]
        self.assertEqual(len(pids), 3)
        for pid in pids:
            self.assertIn(f"pid {pid}", start.stdout)
        self.assertEqual(alive(pids), pids)

        status = project.cluster("status")
        self.assertEqual(status.returncode, 0, status)
        self.assertRegex(status.stdout, r"(?m)^  name +size +age +idle +alive")
        self.assertRegex(status.stdout, r"(?m)^  dev +3 +\S+ +\S+ +3/3 ")

        logs = project.cluster("logs", "dev", "--node", "1")
        self.assertEqual(logs.returncode, 0, logs)
        self.assertIn(f"[node-1] [disttest.agent] node node-1 of cluster {record['id']} "
                      f"(pid {pids[1]})", logs.stdout)
        self.assertNotIn("[node-0]", logs.stdout)
        missing = project.cluster("logs", "dev", "--node", "7")
        self.assertEqual(missing.returncode, 2, missing)
        self.assertIn("has no node 7", missing.stderr)

        # A run that keeps clusters gives it back under its name.
        run = project.run("--keep-cluster", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.report["cluster_starts"], 0, run)
        [used] = run.report["clusters"]
        self.assertEqual((used["id"], used["size"]), (record["id"], 3))
        self.assertTrue(used["reused_from_previous_run"])
        self.assertEqual(sorted(map(int, project.marker("pids"))), sorted(pids[:2]))
        [again] = project.records()
        self.assertEqual((again["id"], again["name"]), (record["id"], "dev"))
        self.assertEqual(alive(pids), pids)

        stop = project.cluster("stop", "dev")
        self.assertEqual(stop.returncode, 0, stop)
        self.assertIn("stopped cluster dev (3 node(s))", stop.stdout)
        self.assertTrue(support.wait_for(lambda: not alive(pids)))
        self.assertEqual(project.records(), [])
        self.assertEqual(locks_left(record), [])
        self.assertFalse(Path(record["tmpdir"]).exists())

    def test_a_started_cluster_outlives_the_runs_that_use_it(self):
        project = Project(self, "keep")
        self.assertEqual(project.cluster("start", "--size", "2", "--name", "dev").returncode, 0)
        pids = project.kept_pids()
        run = project.run()
        self.assertEqual(run.returncode, 0, run)
        # "stop it with: python -m disttest cluster stop dev", says `cluster start`.
        self.assertEqual([r["name"] for r in project.records()], ["dev"])
        self.assertEqual(alive(pids), pids)

    def test_stop_by_name_and_all(self):
        project = Project(self, "keep")
        for name in ("one", "two", "three"):
            started = project.cluster("start", "--size", "1", "--name", name)
            self.assertEqual(started.returncode, 0, started)
        records = {r["name"]: r for r in project.records()}
        self.assertEqual(sorted(records), ["one", "three", "two"])
        pids = {name: [n["pid"] for n in r["nodes"]] for name, r in records.items()}
        # Three clusters, three different node processes: no start adopted another's.
        self.assertEqual(len({pid for p in pids.values() for pid in p}), 3)

        again = project.cluster("start", "--size", "1", "--name", "one")
        self.assertEqual(again.returncode, 2, again)
        self.assertIn("named 'one' exists already", again.stderr)

        stop = project.cluster("stop", "one")
        self.assertEqual(stop.returncode, 0, stop)
        self.assertIn("stopped cluster one (1 node(s))", stop.stdout)
        self.assertTrue(support.wait_for(lambda: not alive(pids["one"])))
        self.assertEqual(alive(pids["two"] + pids["three"]), pids["two"] + pids["three"])
        self.assertEqual(sorted(r["name"] for r in project.records()), ["three", "two"])
        self.assertFalse(Path(records["one"]["tmpdir"]).exists())

        unknown = project.cluster("stop", "one")
        self.assertEqual(unknown.returncode, 2, unknown)
        self.assertIn("no kept cluster named 'one'", unknown.stderr)

        stop_all = project.cluster("stop", "--all")
        self.assertEqual(stop_all.returncode, 0, stop_all)
        self.assertIn("stopped cluster two", stop_all.stdout)
        self.assertIn("stopped cluster three", stop_all.stdout)
        self.assertTrue(support.wait_for(lambda: not alive(pids["two"] + pids["three"])))
        self.assertEqual(project.records(), [])
        for record in records.values():
            self.assertEqual(locks_left(record), [])
        status = project.cluster("status")
        self.assertIn("no kept clusters", status.stdout)


class ClusterClean(unittest.TestCase):
    """``cluster clean`` in a private temporary directory (``TMPDIR``), so that it
    only ever sees what these tests made: cluster directories and port locks live
    under it."""

    def setUp(self):
        self.project = Project(self, "sleepy")
        self.tmpdir = self.project.tmp / "tmp"
        self.tmpdir.mkdir()
        self.locks = self.tmpdir / "disttest-port-locks"
        # The run's ports stop short of 18999, the lock the test holds itself
        # (below the ephemeral ports, apart from every other test's range).
        self.project.extra_env.update(TMPDIR=str(self.tmpdir),
                                      DISTTEST_PORT_RANGE="18000-18998")

    def cluster_dirs(self) -> list[Path]:
        return sorted(self.tmpdir.glob("disttest-c*"))

    def test_clean_after_a_killed_runner(self):
        proc = self.project.popen(env={"SAMPLE_SLEEP": "30"})
        self.addCleanup(proc.kill)
        pids = [int(pid) for pid in self.project.wait_marker("started", proc)]
        self.assertEqual(len(pids), 3)
        proc.kill()
        proc.communicate()
        # The nodes notice that their stdin closed and end by themselves...
        self.assertTrue(support.wait_for(lambda: not alive(pids), timeout=10),
                        f"nodes {alive(pids)} outlived the killed runner by 10s")
        # ...but the runner left its clusters' directories and its lock files.
        dirs = self.cluster_dirs()
        self.assertEqual(len(dirs), 2, dirs)
        locks = [p for p in self.locks.glob("*.lock") if p.read_text().strip() == str(proc.pid)]
        self.assertEqual(len(locks), 3, locks)
        # Not ours to remove: a look-alike directory and a lock somebody holds.
        other = self.tmpdir / "disttest-cache-other"
        other.mkdir()
        held = self.locks / "18999.lock"
        fd = os.open(held, os.O_RDWR | os.O_CREAT)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)

        clean = self.project.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        for directory in dirs:
            self.assertIn(f"removed temporary directory {directory}", clean.stdout)
            self.assertFalse(directory.exists())
        for lock in locks:
            self.assertIn(f"removed port lock {lock.stem}\n", clean.stdout)
            self.assertFalse(lock.exists())
        removed = [line for line in clean.stdout.splitlines() if line.startswith("removed ")]
        self.assertGreaterEqual(len(removed), len(dirs) + len(locks))
        self.assertIn(f"cluster clean: {len(removed)} item(s) removed", clean.stdout)
        self.assertTrue(other.exists())
        self.assertTrue(held.exists())

        again = self.project.cluster("clean")
        self.assertIn("cluster clean: 0 item(s) removed", again.stdout)

    def test_clean_leaves_the_directory_of_a_run_still_going(self):
        # A run makes its cluster's directory before any node has a log open in
        # it; another user's ``cluster clean`` at that moment must not remove it.
        from disttest.clusters.registry import mark_owner

        fresh = self.tmpdir / "disttest-c1-beef-abc123"
        fresh.mkdir()
        mark_owner(fresh)  # this test process: alive
        dead = self.tmpdir / "disttest-c2-dead-abc123"
        dead.mkdir()
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True)
        (dead / ".owner").write_text(f"{gone.stdout.strip()} 1.0\n")

        clean = self.project.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        self.assertTrue(fresh.exists(), clean.stdout)
        self.assertNotIn(str(fresh), clean.stdout)
        self.assertFalse(dead.exists(), clean.stdout)
        self.assertIn(f"removed temporary directory {dead}", clean.stdout)

    def test_clean_signals_no_look_alike_without_proof(self):
        # A process of this user named like a node, whose parent is gone, but that
        # writes into no directory of a run that has ended: nothing proves it is a
        # node of ours, whatever its command line says.
        marker = self.tmpdir / "look-alike.pid"
        code = ("import os, sys, time  # from disttest.agent import main\n"
                f"open({str(marker)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)")
        subprocess.run(["sh", "-c", f"{sys.executable} -c {shlex.quote(code)} >/dev/null 2>&1 &"],
                       check=True)
        self.assertTrue(support.wait_for(lambda: marker.exists() and marker.read_text(), 10))
        pid = int(marker.read_text())
        self.addCleanup(lambda: alive([pid]) and os.kill(pid, signal.SIGKILL))

        clean = self.project.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        self.assertEqual(alive([pid]), [pid], clean.stdout)
        self.assertNotIn(f"orphaned node process {pid}", clean.stdout)
        self.assertIn("none is proved to be ours to stop", clean.stdout)

    def test_clean_kills_a_paused_node_the_killed_runner_left(self):
        proc = self.project.popen(env={"SAMPLE_SLEEP": "30", "SAMPLE_PAUSE": "1"})
        self.addCleanup(proc.kill)
        paused, *others = [int(pid) for pid in self.project.wait_marker("started", proc)]
        # Forked (the default), its parent is the node template, which outlives the
        # runner for a grace period: clean stops the template and what is below it.
        template = psutil.Process(paused).ppid()
        proc.kill()
        proc.communicate()
        self.assertTrue(support.wait_for(lambda: not alive(others), timeout=10))
        # A stopped process cannot read the end of its stdin: it stays.
        time.sleep(0.5)
        if not alive([paused]):
            self.skipTest("another suite's `cluster clean` (same user) stopped the node first")

        clean = self.project.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        # Well within the template's grace period, after which it would end the node.
        self.assertTrue(support.wait_for(lambda: not alive([paused])))
        # Another suite's `cluster clean` (same user, same machine) may have been first.
        if f"orphaned node process {template}" in clean.stdout:
            self.assertIn(f"removed orphaned node process {template} and 1 process(es) it "
                          "started\n", clean.stdout)
        self.assertEqual(self.cluster_dirs(), [])

    def test_clean_stops_kept_clusters_but_not_another_registrys(self):
        mine = Project(self, "keep", env=self.project.extra_env)
        theirs = Project(self, "keep", env=self.project.extra_env)
        for project in (mine, theirs):
            run = project.run("--keep-cluster")
            self.assertEqual(run.returncode, 0, run)
        my_pids, their_pids = mine.kept_pids(), theirs.kept_pids()

        clean = mine.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        self.assertRegex(clean.stdout, r"removed cluster c\d+-\w+ \(2 live node\(s\) stopped\)")
        self.assertTrue(support.wait_for(lambda: not alive(my_pids)))
        self.assertEqual(mine.records(), [])
        # (Kept nodes of other suites running on this machine may add to the count.)
        self.assertRegex(clean.stdout, r"left ([2-9]|\d\d+) node\(s\) kept by another state "
                                       r"directory running")
        self.assertEqual(alive(their_pids), their_pids)
        [record] = theirs.records()
        self.assertTrue(Path(record["tmpdir"]).exists())


if __name__ == "__main__":
    unittest.main()
