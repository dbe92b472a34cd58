"""What another local user can do to a run, end to end: plant links, files and
directories where runs share state, leave records of the wrong shape, reuse
pids. Each test reproduces one way a run used to be harmed.

Runs are subprocesses on copies of ``tests/samples_lifecycle`` samples, with a
temporary directory (``TMPDIR``, sticky and world-writable like /tmp) of
their own, so the shared lock directory they use is the test's.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import psutil

from disttest.clusters.ports import WELL_KNOWN_DEV_PORTS, port_is_free
from tests import support
from tests.other_user import OTHER_GID, OTHER_UID, HeldByOther, require_root, run_as_other
from tests.samples_lifecycle.harness import Project, alive, assert_left_nothing
from tests.samples_lifecycle.harness import report_pids as support_pids

SECRET = "IMPORTANT DATA 1\n"


def free_ports(count: int) -> tuple[int, int]:
    """``count`` consecutive free ports in 45000-47999 (no other test uses these)."""
    for _ in range(200):
        low = random.randrange(45000, 48000 - count)
        ports = range(low, low + count)
        if not set(ports) & WELL_KNOWN_DEV_PORTS and all(
                port_is_free("127.0.0.1", p) for p in ports):
            return low, low + count - 1
    raise unittest.SkipTest(f"no {count} consecutive free ports in 45000-47999")


class SharedTmp:
    """A project whose runs use a private sticky, world-writable TMPDIR, and a
    file of the victim (0600) that the other user would like truncated."""

    def __init__(self, testcase: unittest.TestCase, sample: str = "keep",
                 ports: int = 5) -> None:
        self.project = Project(testcase, sample)
        self.tmp = self.project.tmp / "tmp"
        self.tmp.mkdir()
        os.chmod(self.tmp, 0o1777)
        os.chmod(self.project.tmp, 0o755)  # the other user must reach TMPDIR
        self.low, self.high = free_ports(ports)
        self.project.extra_env.update(TMPDIR=str(self.tmp),
                                      DISTTEST_PORT_RANGE=f"{self.low}-{self.high}",
                                      DISTTEST_MAX_CLUSTER_SIZE="2")
        private = self.project.tmp / "private"
        private.mkdir(mode=0o700)
        self.victim = private / "important.txt"
        self.victim.write_text(SECRET)
        os.chmod(self.victim, 0o600)
        self.locks = self.tmp / "disttest-port-locks"

    def shared_dir(self) -> Path:
        """The shared lock directory as a first run makes it (root's, sticky)."""
        self.locks.mkdir(mode=0o1777)
        os.chmod(self.locks, 0o1777)
        return self.locks


class LockFiles(unittest.TestCase):

    def setUp(self):
        require_root()

    def test_links_and_planted_files_in_the_lock_directory_harm_nothing(self):
        shared = SharedTmp(self)
        locks = shared.shared_dir()
        ports = list(range(shared.low, shared.high + 1))
        victim = str(shared.victim)

        def plant():
            # Links to the victim's file, a FIFO (opening it would hang) and a
            # plain file claiming pid 1: three of the five ports.
            os.symlink(victim, locks / f"{ports[0]}.lock")
            os.symlink(victim, locks / f"{ports[1]}.lock")
            os.mkfifo(locks / f"{ports[2]}.lock")
            (locks / f"{ports[3]}.lock").write_text("1\n")

        run_as_other(plant)
        run = shared.project.run("--keep-cluster", timeout=60)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(shared.victim.read_text(), SECRET, "a run wrote through a link")
        # The plain file nobody holds blocked nothing: the pair got ports 3 and 4.
        [record] = shared.project.records()
        used = sorted(p for node in record["nodes"] for p in node["ports"].values())
        self.assertEqual(used, ports[3:], record)
        # Never written: it is the other user's.
        self.assertEqual((locks / f"{ports[3]}.lock").read_text(), "1\n")

        stop = shared.project.cluster("stop", "--all")
        self.assertEqual(stop.returncode, 0, stop)
        clean = shared.project.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        self.assertEqual(shared.victim.read_text(), SECRET, "cluster clean wrote through a link")
        # The links are still links: neither followed nor replaced by a file of ours.
        self.assertTrue(os.path.islink(locks / f"{ports[0]}.lock"))
        assert_left_nothing(self, run)

    def test_a_port_locked_by_another_user_is_not_blamed_on_a_disttest_run(self):
        shared = SharedTmp(self, ports=2)
        locks = shared.shared_dir()
        holders = [HeldByOther(locks / f"{port}.lock") for port in (shared.low, shared.high)]
        for holder in holders:
            self.addCleanup(holder.close)
        run = shared.project.run()
        self.assertIn("has only 0 free port(s), 2 needed", run.output)
        self.assertIn(f"{shared.low} locked by another user's process (uid {OTHER_UID})",
                      run.output)
        self.assertNotIn("disttest run pid 1", run.output)

    def test_a_lock_directory_made_by_another_user_is_not_used(self):
        shared = SharedTmp(self)
        locks = shared.locks

        def make_dir():
            os.mkdir(locks, 0o777)
            os.chmod(locks, 0o777)  # writable by all, not sticky, and theirs

        run_as_other(make_dir)
        run = shared.project.run()
        self.assertEqual(run.returncode, 0, run)
        own = shared.tmp / f"disttest-port-locks-{os.getuid()}"
        self.assertIn(f"port lock directory {locks} is owned by another user "
                      f"(uid {OTHER_UID}): not used; this user's runs lock ports in {own}",
                      run.output)
        self.assertEqual(list(locks.iterdir()), [], "a run wrote into the other user's directory")
        self.assertEqual(stat.S_IMODE(own.stat().st_mode), 0o700)
        assert_left_nothing(self, run)

    def test_a_link_in_place_of_the_lock_directory_is_not_followed(self):
        shared = SharedTmp(self)
        target = shared.project.tmp / "private-dir"
        target.mkdir(mode=0o700)

        run_as_other(os.symlink, str(target), str(shared.locks))
        run = shared.project.run()
        self.assertEqual(run.returncode, 0, run)
        self.assertIn(f"port lock directory {shared.locks} is a symbolic link: not used",
                      run.output)
        self.assertEqual(stat.S_IMODE(target.stat().st_mode), 0o700, "chmod followed the link")
        self.assertEqual(list(target.iterdir()), [])


def record_like(cluster_id: str, **changes) -> dict:
    """A registry record of the right shape, naming no live process."""
    record = {"id": cluster_id, "name": cluster_id, "created": 1.0, "last_used": 1.0,
              "ttl": 60.0, "python": "/nonexistent/python", "project": "/nonexistent",
              "network": "local", "env": [], "port_names": ["app"], "key": "ab" * 32,
              "host": "127.0.0.1", "tmpdir": "/nonexistent/disttest-x", "owner_pid": None,
              "pinned": False,
              "nodes": [{"name": "node-0", "index": 0, "pid": 2 ** 22 + 1,
                         "control_port": 45000, "ports": {"app": 45001},
                         "log_path": "/nonexistent/node-0.log"}]}
    record.update(changes)
    return record


class BadStateFiles(unittest.TestCase):
    """A record or history of the wrong shape is set aside with a note naming it;
    runs and ``cluster`` subcommands go on as if it were absent."""

    BAD_RECORDS = {
        "c91-list": [1, 2],
        "c92-idonly": {"id": "c92-idonly"},
        "c93-nopid": None,  # a full record without its node's pid (filled below)
        "c94-notjson": "{not json",
    }

    def plant_records(self, project: Project) -> dict[str, Path]:
        folder = project.state / "clusters"
        folder.mkdir(parents=True, mode=0o700)
        paths = {}
        for cluster_id, content in self.BAD_RECORDS.items():
            if content is None:
                content = record_like(cluster_id)
                del content["nodes"][0]["pid"]
            path = folder / f"{cluster_id}.json"
            path.write_text(content if isinstance(content, str) else json.dumps(content))
            paths[cluster_id] = path
        return paths

    def assert_set_aside(self, run, paths: dict[str, Path]) -> None:
        self.assertNotIn("Traceback", run.output, run)
        for path in paths.values():
            self.assertIn(f"{path} is not a valid disttest file (", run.output)
            self.assertFalse(path.exists(), path)
            self.assertTrue(path.with_name(path.name + ".bad").exists(), path)

    def test_runs_go_on_and_set_bad_records_aside(self):
        project = Project(self, "keep")
        paths = self.plant_records(project)
        run = project.run()
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("OK", run.output)
        self.assertIn("(field 'name' must be a non-empty string): set aside as c92-idonly.json.bad",
                      run.output)
        self.assertIn("(nodes[0].pid must be a pid (an integer above 1))", run.output)
        self.assertIn("(a record is a JSON object, not list)", run.output)
        self.assert_set_aside(run, paths)
        # Set aside once: the next run has nothing to say about them.
        again = project.run()
        self.assertEqual(again.returncode, 0, again)
        self.assertNotIn("not a valid disttest file", again.output)

    def test_cluster_subcommands_go_on_and_set_bad_records_aside(self):
        for command in (["status"], ["stop", "--all"], ["clean"]):
            with self.subTest(command=command):
                project = Project(self, "keep")
                paths = self.plant_records(project)
                run = project.cluster(*command)
                self.assertEqual(run.returncode, 0, run)
                self.assert_set_aside(run, paths)

    def test_a_durations_history_of_the_wrong_shape_is_set_aside(self):
        project = Project(self, "keep")
        history = project.tmp / "durations.json"
        for content in ('{"classes": "oops"}', '[1]', '{"cluster_startup_s": {"2": "x"}}'):
            for args in (["--shard", "1/2"], []):
                with self.subTest(content=content, args=args):
                    history.write_text(content)
                    run = project.run("--durations-file", str(history), *args)
                    self.assertEqual(run.returncode, 0, run)
                    self.assertNotIn("Traceback", run.output)
                    self.assertIn(f"{history} is not a valid disttest file (", run.output)
                    self.assertEqual(history.with_name("durations.json.bad").read_text(),
                                     content)
                    if args:  # shards never write the history
                        self.assertFalse(history.exists())
                    else:  # a whole run records a fresh one
                        data = json.loads(history.read_text())
                        self.assertIn("tests.test_keep.Pair", data["classes"])
                    history.with_name("durations.json.bad").unlink()
                    history.unlink(missing_ok=True)


class ConcurrentAdoption(unittest.TestCase):

    def test_one_kept_cluster_is_adopted_by_exactly_one_of_six_runs(self):
        project = Project(self, "keep")
        first = project.run("--keep-cluster")
        self.assertEqual(first.returncode, 0, first)
        [record] = project.records()
        kept_pids = sorted(node["pid"] for node in record["nodes"])

        procs, reports = [], []
        for i in range(6):
            report = project.tmp / f"concurrent-{i}.json"
            reports.append(report)
            procs.append(project.popen("--json-report", str(report)))
        for proc in procs:
            self.addCleanup(proc.kill)
        runs = [project.finish(proc, ["run", i], 0.0, report)
                for i, (proc, report) in enumerate(zip(procs, reports))]
        for run in runs:
            self.assertEqual(run.returncode, 0, run)
        adopters = [run for run in runs if run.report["clusters"][0]["reused_from_previous_run"]]
        self.assertEqual(len(adopters), 1, "\n".join(map(str, runs)))
        self.assertEqual(sorted(support_pids(adopters[0].report)), kept_pids)
        for run in runs:
            if run is not adopters[0]:
                self.assertEqual(set(support_pids(run.report)) & set(kept_pids), set())
        # The adopter stopped it (not kept again); nothing is left anywhere.
        self.assertEqual(project.records(), [])
        for run in runs:
            assert_left_nothing(self, run, kept_pids)

    def test_a_grown_kept_cluster_is_recorded_with_every_node(self):
        project = Project(self, "keep")
        first = project.run("--keep-cluster")
        self.assertEqual(first.returncode, 0, first)
        [record] = project.records()
        self.assertEqual(len(record["nodes"]), 2)

        grown = project.run("--keep-cluster", "--cluster-size", "3", report=True)
        self.assertEqual(grown.returncode, 0, grown)
        self.assertIn(f"growing cluster {record['id']} from 2 to 3 nodes", grown.stderr)
        self.assertEqual(grown.report["cluster_starts"], 0, grown)
        [again] = project.records()
        self.assertEqual(again["id"], record["id"])
        pids = [node["pid"] for node in again["nodes"]]
        self.assertEqual(len(pids), 3, again)
        self.assertEqual(alive(pids), pids)

        stop = project.cluster("stop", "--all")
        self.assertEqual(stop.returncode, 0, stop)
        self.assertIn("(3 node(s))", stop.stdout)
        self.assertTrue(support.wait_for(lambda: not alive(pids)), alive(pids))


class ProvedBeforeSignalled(unittest.TestCase):
    """A record's pid is signalled only while it is still the recorded node: after
    the node ended, the pid may belong to anyone (here: another run's node)."""

    def reuse_pid(self):
        """A kept cluster whose record now names, as its node-0, a live node of
        another run (what pid reuse does), and that other node's pid."""
        mine, theirs = Project(self, "keep"), Project(self, "keep")
        for project in (mine, theirs):
            run = project.run("--keep-cluster")
            self.assertEqual(run.returncode, 0, run)
        [record], [other] = mine.records(), theirs.records()
        victim = other["nodes"][0]["pid"]
        hidden = psutil.Process(record["nodes"][0]["pid"])  # no record names it any more
        self.addCleanup(lambda: hidden.is_running() and hidden.kill())
        record["nodes"][0]["pid"] = victim
        path = mine.record_paths()[0]
        path.write_text(json.dumps(record))
        return mine, victim, other

    def test_cluster_stop_does_not_signal_a_reused_pid(self):
        mine, victim, other = self.reuse_pid()
        stop = mine.cluster("stop", "--all")
        self.assertEqual(stop.returncode, 0, stop)
        self.assertIn("(1 node(s))", stop.stdout)  # its own node-1 only
        self.assertEqual(alive([victim]), [victim], "another run's node was signalled")

    def test_a_run_finding_the_record_stale_does_not_signal_a_reused_pid(self):
        mine, victim, other = self.reuse_pid()
        run = mine.run()
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("removed stale kept cluster", run.stderr)
        self.assertEqual(alive([victim]), [victim], "another run's node was signalled")
        clean = mine.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        self.assertEqual(alive([victim]), [victim], "another run's node was signalled")


def relay_and_inject(listener: socket.socket, node_address, command: str) -> None:
    """The other user's listener on a port the controller dials: it passes the
    handshake between the controller and a live node, then sends the node a
    request of its own (``os.system(command)``) on the authenticated connection."""
    import pickle

    from disttest.clusters import protocol

    controller, _ = listener.accept()
    node = socket.create_connection(node_address, 5)
    node.settimeout(5)
    controller.settimeout(5)
    protocol.send_frame(controller, protocol.recv_frame(node, 256))   # challenge
    protocol.send_frame(node, protocol.recv_frame(controller, 256))   # answer
    protocol.send_frame(controller, protocol.recv_frame(node, 256))   # welcome
    protocol.send_frame(node, pickle.dumps(("call", os.system, (command,), {})))
    try:
        node.recv(1 << 16)  # the reply to our request, or the node closing on us
    except OSError:
        pass
    finally:
        node.close()
        controller.close()


class RelayedHandshake(unittest.TestCase):

    def setUp(self):
        require_root()

    def test_relaying_a_nodes_handshake_runs_nothing_on_it(self):
        from disttest.clusters import protocol
        from disttest.requirements import Requirement

        pool = support.make_pool()
        self.addCleanup(pool.shutdown)
        node = pool.acquire(Requirement(size=1)).nodes[0]
        marker = Path(tempfile.mkdtemp(prefix="disttest-tests-relay-")) / "ran"
        self.addCleanup(shutil.rmtree, marker.parent, True)
        os.chmod(marker.parent, 0o777)
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)

        pid = os.fork()
        if pid == 0:  # the other user
            status = 1
            try:
                os.setgroups([])
                os.setgid(OTHER_GID)
                os.setuid(OTHER_UID)
                relay_and_inject(listener, (node.host, node.process.control_port),
                                 f"touch {marker}")
                status = 0
            finally:
                os._exit(status)
        # The controller dials the other user's port (a kept node's port that
        # someone else took after the node died) with the cluster key.
        sock = socket.create_connection(listener.getsockname(), 5)
        try:
            protocol.client_handshake(sock, bytes.fromhex(node.boot["key"]))
        finally:
            _, status = os.waitpid(pid, 0)
            sock.close()
        self.assertEqual(status, 0, "the relay itself failed")
        self.assertFalse(marker.exists(), "a relayed handshake let another user run code on a node")
        support.wait_for(lambda: "failed its MAC" in node.logs())
        self.assertIn("failed its MAC", node.logs())
        self.assertEqual(node.call(os.getpid), node.pid)  # the node still serves its controller


class DescriptorShortage(unittest.TestCase):
    """Idle connections (or node code leaking files) exhaust a node's descriptors."""

    def test_a_node_out_of_descriptors_keeps_serving_and_loses_no_call(self):
        from disttest.requirements import Requirement
        from tests.containment_nodefuncs import limit_descriptors, wait_for_file

        pool = support.make_pool()
        self.addCleanup(pool.shutdown)
        node = pool.acquire(Requirement(size=1)).nodes[0]
        release = Path(tempfile.mkdtemp(prefix="disttest-tests-emfile-")) / "go"
        self.addCleanup(shutil.rmtree, release.parent, True)
        in_flight = node.submit(wait_for_file, str(release), "answer")
        limit = node.call(limit_descriptors, 8)

        idle = []
        self.addCleanup(lambda: [sock.close() for sock in idle])
        for _ in range(limit + 20):  # far more than the node can take
            idle.append(socket.create_connection((node.host, node.process.control_port), 5))
        support.wait_for(lambda: "accept() failed" in node.logs(), timeout=10)
        self.assertIn("accept() failed: Too many open files", node.logs())

        release.touch()
        self.assertEqual(in_flight.result(timeout=30), "answer", "the call in flight was lost")
        self.assertTrue(node.alive, "the node died of the shortage")
        for sock in idle:
            sock.close()
        self.assertEqual(node.call(os.getpid), node.pid)  # new connections are served again
        self.assertEqual(node.logs().count("accept() failed"), 1, "logged more than once")


class StuckKeptNodes(unittest.TestCase):

    def test_a_kept_node_with_a_stuck_call_still_expires(self):
        project = Project(self, "stuck", env={"DISTTEST_CALL_TIMEOUT": "1"})
        run = project.run("--keep-cluster", env={"DISTTEST_KEEP_CLUSTERS_TTL": "1"})
        self.assertEqual(run.returncode, 0, run)
        [record] = project.records()
        pids = [node["pid"] for node in record["nodes"]]
        self.assertEqual(sorted(pids), sorted(map(int, project.marker("pids"))))
        self.assertEqual(alive(pids), pids)
        # The stuck call counts as idle once call_timeout (1s) has passed: both
        # nodes end after their TTL, and the record goes with the last one.
        self.assertTrue(support.wait_for(lambda: not alive(pids), timeout=15),
                        f"kept nodes {alive(pids)} did not expire")
        self.assertTrue(support.wait_for(lambda: project.records() == [], timeout=3),
                        project.records())

    def test_a_kept_node_whose_record_is_gone_is_found_and_removed(self):
        project = Project(self, "keep")
        run = project.run("--keep-cluster")
        self.assertEqual(run.returncode, 0, run)
        [record] = project.records()
        pids = [node["pid"] for node in record["nodes"]]
        for pid in pids:
            self.addCleanup(kill_quietly, pid)
        project.record_paths()[0].unlink()  # as an expiring sibling once did

        status = project.cluster("status")
        self.assertEqual(status.returncode, 0, status)
        for pid in pids:
            self.assertIn(f"kept node process {pid} is alive but no record names it", status.stdout)
        clean = project.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        for pid in pids:
            self.assertIn(f"removed kept node process {pid} that no record names", clean.stdout)
        self.assertTrue(support.wait_for(lambda: not alive(pids)), alive(pids))

    def test_another_registrys_kept_nodes_are_left_alone(self):
        mine, theirs = Project(self, "keep"), Project(self, "keep")
        run = theirs.run("--keep-cluster")
        self.assertEqual(run.returncode, 0, run)
        pids = theirs.kept_pids()
        status = mine.cluster("status")
        self.assertIn("no kept clusters", status.stdout)
        clean = mine.cluster("clean")
        self.assertEqual(clean.returncode, 0, clean)
        self.assertEqual(alive(pids), pids, "another state directory's kept nodes were stopped")


class SmallerItems(unittest.TestCase):

    def test_a_segfaulting_node_leaves_its_traceback_in_its_log(self):
        from disttest.errors import DisttestError
        from disttest.requirements import Requirement
        from tests.containment_nodefuncs import crash_in_c

        pool = support.make_pool()
        self.addCleanup(pool.shutdown)
        node = pool.acquire(Requirement(size=1)).nodes[0]
        with self.assertRaises(DisttestError) as caught:
            node.call(crash_in_c)
        self.assertIn("SIGSEGV", str(caught.exception))
        log = node.logs()
        self.assertIn("Fatal Python error: Segmentation fault", log)
        self.assertIn("in crash_in_c", log)

    def test_a_read_only_state_directory_with_keep_cluster(self):
        require_root()
        if not shutil.which("unshare"):
            self.skipTest("a read-only state directory is made with unshare -m and a "
                          "read-only bind mount: unshare is not installed")
        project = Project(self, "keep")
        project.state.mkdir()
        script = (f'mount --bind "$STATE" "$STATE" && mount -o remount,ro,bind "$STATE" '
                  f'&& exec "{sys.executable}" -m disttest --keep-cluster')
        env = project.env({"STATE": str(project.state)})
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=project.root,
                              env=env, capture_output=True, text=True, timeout=60)
        if "mount:" in done.stderr and "Ran" not in done.stderr:
            self.skipTest(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, output)
        self.assertNotIn("Traceback", output)
        self.assertIn("Ran 1 test", output)
        self.assertIn(f"clusters are not kept: the state directory {project.state} is not "
                      "writable (Read-only file system)", output)
        self.assertIn("OK", output)
        self.assertEqual(list(project.state.iterdir()), [])

    def test_the_proxy_says_when_it_listens_beyond_loopback(self):
        from disttest.clusters import network
        from disttest.events import EventBus

        for host, says in (("0.0.0.0", "every interface"), ("127.0.0.1", None),
                           ("::1", None)):
            with self.subTest(host=host):
                events = EventBus()
                warnings = []
                events.subscribe(lambda e: e.kind == "warning" and warnings.append(e.message))
                proxy = network.make("proxy", "c1-test", host, events)
                self.addCleanup(proxy.close)
                if says is None:
                    self.assertEqual(warnings, [])
                else:
                    [warning] = warnings
                    self.assertIn(f"the network proxy listens on {host} ({says})", warning)

    def test_cluster_stop_waits_one_clean_up_timeout_not_one_per_node(self):
        import time

        from disttest.clusters.pool import ClusterPool
        from disttest.config import load_config
        from disttest.requirements import Requirement
        from tests.containment_nodefuncs import ignore_sigterm

        state = tempfile.mkdtemp(prefix="disttest-tests-state-")
        self.addCleanup(shutil.rmtree, state, True)
        timeout = 2.0
        pool = support.track_pool(ClusterPool(load_config(support.REPO).replace(
            state_dir=state, cleanup_timeout=timeout)))
        self.addCleanup(pool.shutdown)
        cluster = pool.acquire(Requirement(size=3))
        cluster.call_all(ignore_sigterm)  # each node makes `cluster stop` wait for it
        pids = [node.pid for node in cluster.nodes]
        for pid in pids:
            self.addCleanup(kill_quietly, pid)
        pool.release(cluster)
        self.assertEqual(len(pool.keep(60.0)), 1)

        def cluster_command(*args) -> float:
            started = time.monotonic()
            done = support.run_python(["-m", "disttest", "cluster", *args],
                                      env={"DISTTEST_STATE_DIR": state,
                                           "DISTTEST_CLEANUP_TIMEOUT": str(timeout)})
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            return time.monotonic() - started

        baseline = cluster_command("status")  # the same command, with nothing to wait for
        elapsed = cluster_command("stop", "--all")
        self.assertTrue(support.wait_for(lambda: not alive(pids)), alive(pids))
        # Each node ignores SIGTERM: one after another, stopping took 3 timeouts.
        self.assertLess(elapsed - baseline, 2 * timeout,
                        f"cluster stop took {elapsed:.1f}s (status: {baseline:.1f}s)")


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass


if __name__ == "__main__":
    unittest.main()
