"""Failure handling: every diagnosis produced for real, and the fallbacks end to end.

The first half drives a :class:`ClusterPool` in this process and makes each
failure happen for real: ports someone listens on, a host name that does not
resolve, an interpreter that does not exist, nodes whose interpreter dies
while starting (``PYTHONHOME`` pointing nowhere, in the environment the
nodes inherit), nodes that hang before they are ready. Only "not enough
memory" is made up (``machine_resources`` patched): producing it for real
would mean exhausting the machine.

The second half runs ``python -m disttest`` on the sample projects in
``tests/samples_failures/`` (see its README) and asserts on what a user sees:
exit status, progress lines, the summary and the JSON report.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import sys
import shutil
import socket
import tempfile
import textwrap
import unittest
from pathlib import Path
from unittest import mock

from disttest import environment
from disttest.clusters.launcher import LocalLauncher
from disttest.clusters.pool import ClusterPool
from disttest.clusters.ports import WELL_KNOWN_DEV_PORTS, PortAllocator, port_is_free
from disttest.config import load_config
from disttest.environment import MachineResources, fit_cluster
from disttest.errors import ClusterStartError, PortRangeExhausted
from disttest.events import EventBus
from disttest.requirements import Requirement
from tests import support
from tests.fixtures import nodefuncs as nf
from tests.test_runner_e2e import Sample

HERE = Path(__file__).resolve().parent
SAMPLES = HERE / "samples_failures"
HOST = "127.0.0.1"
MiB = 1024 * 1024
GiB = 1024 * MiB


def tearDownModule():
    support.shutdown_and_check()


def free_range(count: int) -> tuple[int, int]:
    """``count`` consecutive ports in 30000-32767, none a dev port, none busy or locked now.

    Outside the default port_range other runs use, below the kernel's
    ephemeral ports (as tests/test_ports.py does).
    """
    from disttest.clusters.ports import default_lock_dir

    locks = default_lock_dir()
    for _ in range(200):
        low = random.randrange(30000, 32768 - count)
        ports = range(low, low + count)
        if (not set(ports) & WELL_KNOWN_DEV_PORTS
                and not any((locks / f"{p}.lock").exists() for p in ports)
                and all(port_is_free(HOST, p) for p in ports)):
            return low, low + count - 1
    raise unittest.SkipTest(f"no {count} consecutive free ports in 30000-32767")


def listen_on(testcase: unittest.TestCase, ports) -> None:
    """Hold a listening socket on each port until the test ends."""
    for port in ports:
        sock = socket.socket()
        testcase.addCleanup(sock.close)
        sock.bind((HOST, port))
        sock.listen(1)


def project_config(**changes):
    return load_config(support.REPO).replace(state_dir=support.STATE_DIR, **changes)


class PoolFailures(unittest.TestCase):
    """Each start failure, made to happen, and the diagnosis it gives."""

    def pool(self, launcher=None, allocator=None, **changes) -> ClusterPool:
        self.events = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        pool = support.track_pool(ClusterPool(project_config(**changes), bus,
                                              launcher=launcher, allocator=allocator))
        self.addCleanup(pool.shutdown)
        return pool

    def kinds(self, kind: str) -> list:
        return [e for e in self.events if e.kind == kind]

    def setUp(self):
        self.addCleanup(support.assert_no_leaks)  # runs last: after every pool is shut down

    # -- ports ------------------------------------------------------------------------
    def test_port_range_exhausted_names_range_need_holder_and_fix(self):
        low, high = free_range(3)
        lock_dir = tempfile.mkdtemp(prefix="disttest-tests-locks-")
        self.addCleanup(shutil.rmtree, lock_dir, True)
        listen_on(self, [low, low + 1])  # one port of three left
        allocator = PortAllocator((low, high), HOST, lock_dir=Path(lock_dir))
        pool = self.pool(allocator=allocator, port_range=(low, high), startup_retries=0)
        with self.assertRaises(PortRangeExhausted) as caught:
            pool.acquire(Requirement(2))
        error = caught.exception
        self.assertEqual(error.diagnosis.kind, "port-range-exhausted")
        self.assertEqual(error.diagnosis.problem,
                         f"port_range {low}-{high} has only 1 free port(s), 2 needed")
        me = f"listened on by pid {os.getpid()} "
        self.assertIn(f"{low} {me}", error.diagnosis.cause)
        self.assertIn(f"{low + 1} {me}", error.diagnosis.cause)
        self.assertNotIn(f"{high} listened", error.diagnosis.cause)
        self.assertTrue(error.diagnosis.steps[0].startswith(
            f'widen port_range, e.g. port_range = "{low}-'), error.diagnosis.steps)
        wider = re.search(r'"(\d+)-(\d+)"', error.diagnosis.steps[0]).groups()
        self.assertGreater(int(wider[1]) - int(wider[0]), high - low + 2)
        self.assertIn("python -m disttest cluster clean", error.diagnosis.steps[1])
        self.assertEqual((error.port_range, error.needed), ((low, high), 2))
        self.assertEqual(len(error.holders), 2)
        # nothing of the failed attempt stays locked
        self.assertEqual(list(Path(lock_dir).glob("*.lock")), [])
        self.assertEqual(allocator.held, frozenset())

    def test_a_failed_requirement_is_not_tried_again_in_the_same_run(self):
        low, high = free_range(3)
        lock_dir = tempfile.mkdtemp(prefix="disttest-tests-locks-")
        self.addCleanup(shutil.rmtree, lock_dir, True)
        listen_on(self, range(low, high + 1))
        pool = self.pool(allocator=PortAllocator((low, high), HOST, lock_dir=Path(lock_dir)),
                         port_range=(low, high), startup_retries=0)
        with self.assertRaises(PortRangeExhausted) as first:
            pool.acquire(Requirement(2))
        with self.assertRaises(PortRangeExhausted) as again:
            pool.acquire(Requirement(3))  # larger: cannot fit either
        self.assertIs(again.exception, first.exception)
        self.assertEqual(len(self.kinds("cluster_starting")), 1)
        self.assertEqual(len(self.kinds("cluster_start_failed")), 1)
        with self.assertRaises(PortRangeExhausted):
            pool.acquire(Requirement(1))  # smaller: worth a try
        self.assertEqual(len(self.kinds("cluster_starting")), 2)

    def test_port_range_exhausted_survives_pickling(self):
        error = PortRangeExhausted("port_range 1-2 has only 0 free port(s), 2 needed",
                                   "held by: 1 listened on by pid 7", ["widen port_range"],
                                   port_range=(1, 2), needed=2, holders=["1 listened on"])
        copy = pickle.loads(pickle.dumps(error))
        self.assertIsInstance(copy, PortRangeExhausted)
        self.assertEqual(copy.diagnosis, error.diagnosis)
        self.assertEqual((copy.port_range, copy.needed, copy.holders),
                         ((1, 2), 2, ["1 listened on"]))

    # -- host ---------------------------------------------------------------------------
    def test_a_host_that_does_not_resolve_falls_back_to_loopback(self):
        pool = self.pool(host="no-such-host.invalid")
        warnings = [e.message for e in self.kinds("warning")]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("host 'no-such-host.invalid' could not be resolved", warnings[0])
        self.assertIn("falling back to 127.0.0.1", warnings[0])
        self.assertIn('host = "127.0.0.1"', warnings[0])
        self.assertIn("DISTTEST_HOST=127.0.0.1", warnings[0])
        cluster = pool.acquire(Requirement(2))
        self.assertEqual([n.host for n in cluster], [HOST, HOST])
        self.assertEqual(cluster.call_all(nf.add, 1, 2), [3, 3])

    # -- spawning -----------------------------------------------------------------------
    def test_an_interpreter_that_does_not_exist_is_not_retried(self):
        pool = self.pool(launcher=LocalLauncher(executable="/nonexistent/python"),
                         startup_retries=3, retry_backoff=0.01)
        with self.assertRaises(ClusterStartError) as caught:
            pool.acquire(Requirement(2))
        d = caught.exception.diagnosis
        self.assertEqual(d.kind, "spawn-executable")
        self.assertEqual(d.problem, "could not start the process of node node-0")
        self.assertIn("the interpreter '/nonexistent/python' cannot be executed", d.cause)
        self.assertIn("interpreter that exists", d.steps[0])
        self.assertEqual(len(self.kinds("cluster_starting")), 1)
        self.assertEqual(self.kinds("cluster_retry"), [])
        self.assertEqual([e.attempts for e in self.kinds("cluster_start_failed")], [1])

    def test_restart_after_the_working_directory_is_gone(self):
        pool = self.pool()
        workdir = tempfile.mkdtemp(prefix="disttest-tests-cwd-")
        here = os.getcwd()
        os.chdir(workdir)
        try:
            cluster = pool.acquire(Requirement(1))
        finally:
            os.chdir(here)
        shutil.rmtree(workdir)
        node = cluster[0]
        node.kill()
        with self.assertRaises(ClusterStartError) as caught:
            node.restart()
        d = caught.exception.diagnosis
        self.assertEqual(d.kind, "spawn-cwd")
        self.assertIn(f"the working directory {workdir!r} of the test process is gone",
                      d.cause)
        self.assertNotIn("interpreter", d.cause)

    def test_a_node_that_dies_while_starting_shows_its_log(self):
        pool = self.pool(startup_retries=1, retry_backoff=0.01)
        # Nodes inherit the environment: with PYTHONHOME pointing nowhere their
        # interpreter cannot even find its standard library.
        with mock.patch.dict(os.environ, {"PYTHONHOME": "/nonexistent/python-home"}):
            with self.assertRaises(ClusterStartError) as caught:
                pool.acquire(Requirement(2))
        error = caught.exception
        d = error.diagnosis
        self.assertEqual(d.kind, "node-start-crash")
        self.assertRegex(d.problem, r"^node node-[01] exited during start-up with status 1$")
        self.assertIn("its log ends with:", d.cause)
        self.assertIn("PYTHONHOME = '/nonexistent/python-home'", d.cause)
        self.assertIn("No module named 'encodings'", d.cause)
        self.assertIn("No module named 'encodings'", error.log_tail)
        self.assertIn("node_env", d.steps[0])
        self.assertEqual(d.steps[1], "run: python -m disttest preflight")
        # retried (another attempt may work), then given up
        self.assertEqual([e.attempt for e in self.kinds("cluster_retry")], [1])
        self.assertEqual(len(self.kinds("cluster_starting")), 2)
        # and with the environment back, the next requirement starts
        self.assertEqual(pool.acquire(Requirement(1, env=(("X", "1"),)))[0].call(nf.add, 1, 1), 2)

    def test_a_node_that_dies_before_reading_its_bootstrap(self):
        pool = self.pool(startup_retries=0)
        # A bootstrap larger than a pipe holds: writing it waits for the node to read,
        # and the node dies first (the write fails) — still a start-up crash.
        big_path = sys.path + ["/nonexistent/" + "x" * 256 * 1024]
        with mock.patch.dict(os.environ, {"PYTHONHOME": "/nonexistent/python-home"}), \
                mock.patch.object(sys, "path", big_path):
            with self.assertRaises(ClusterStartError) as caught:
                pool.acquire(Requirement(1))
        d = caught.exception.diagnosis
        self.assertEqual(d.kind, "node-start-crash")
        self.assertEqual(d.problem, "node node-0 exited during start-up with status 1")
        self.assertIn("No module named 'encodings'", d.cause)

    def test_a_node_env_too_large_for_the_environment(self):
        pool = self.pool(startup_retries=0)
        with self.assertRaises(ClusterStartError) as caught:
            pool.acquire(Requirement(1, env=(("SAMPLE_BLOB", "x" * 256 * 1024),)))
        d = caught.exception.diagnosis
        self.assertEqual(d.kind, "spawn-environment")
        self.assertIn("environment is too large", d.problem)
        self.assertIn("node.call()", d.steps[0])

    def test_a_node_not_ready_in_time_is_retried_with_growing_backoff(self):
        pool = self.pool(startup_timeout=0.001, startup_retries=2, retry_backoff=0.05)
        with self.assertRaises(ClusterStartError) as caught:
            pool.acquire(Requirement(2))
        d = caught.exception.diagnosis
        self.assertEqual(d.kind, "node-start-timeout")
        self.assertRegex(d.problem, r"^node node-[01] did not report ready within 0\.001s$")
        self.assertIn("overloaded", d.cause)
        self.assertIn("raise startup_timeout", d.steps[0])
        retries = self.kinds("cluster_retry")
        self.assertEqual([(e.attempt, e.of) for e in retries], [(1, 3), (2, 3)])
        delays = [e.delay for e in retries]
        for attempt, delay in enumerate(delays):  # backoff doubles, plus up to 25% jitter
            base = 0.05 * 2 ** attempt
            self.assertTrue(base <= delay <= base * 1.25, delays)
        self.assertLess(delays[0], delays[1])
        self.assertEqual(len(self.kinds("cluster_starting")), 3)
        self.assertEqual([e.attempts for e in self.kinds("cluster_start_failed")], [3])

    @unittest.skipUnless(os.path.exists("/proc/self/cmdline"), "needs /proc")
    def test_a_node_that_hangs_while_starting_shows_its_log_tail(self):
        hook = Path(tempfile.mkdtemp(prefix="disttest-tests-hang-"))
        self.addCleanup(shutil.rmtree, hook, True)
        (hook / "sitecustomize.py").write_text(textwrap.dedent("""\
            import sys, time
            with open("/proc/self/cmdline", "rb") as f:  # sys.argv is not set yet
                agent = b"disttest.agent" in f.read()
            if agent:
                print("loading plugins from /opt/plugins ...", file=sys.stderr, flush=True)
                time.sleep(60)
        """))
        pool = self.pool(startup_timeout=3.0, startup_retries=0)
        path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
        with mock.patch.dict(os.environ, {"PYTHONPATH": path}):
            with self.assertRaises(ClusterStartError) as caught:
                pool.acquire(Requirement(1))
        d = caught.exception.diagnosis
        self.assertEqual(d.kind, "node-start-timeout")
        self.assertEqual(d.problem, "node node-0 did not report ready within 3s")
        self.assertIn("its log ends with:\nloading plugins from /opt/plugins ...", d.cause)
        self.assertEqual(caught.exception.log_tail, "loading plugins from /opt/plugins ...")

    # -- memory ---------------------------------------------------------------------------
    def test_fit_cluster_with_made_up_figures(self):
        machine = MachineResources(cpus=4, total_memory=8 * GiB, available_memory=1 * GiB)
        # 80% of 1 GiB is usable: 819 MiB
        self.assertIsNone(fit_cluster(10, 80 * MiB, machine))
        problem = fit_cluster(11, 80 * MiB, machine)
        self.assertIn("a cluster of 11 nodes needs about 880.0 MiB (80.0 MiB estimated per "
                      "node) but only 819.2 MiB is usable (1.0 GiB available of 8.0 GiB, "
                      "keeping 20% in reserve)", problem)
        self.assertIn("--fallback reduce or simulate", problem)
        self.assertIsNone(fit_cluster(12, 80 * MiB, machine, reserve_fraction=0.0))
        self.assertIsNotNone(fit_cluster(1, 1, MachineResources(1, GiB, 0)))

    def test_a_cluster_that_does_not_fit_in_memory_is_not_retried(self):
        pool = self.pool(startup_retries=2, retry_backoff=0.01)
        small = pool.acquire(Requirement(1))
        pool.release(small)
        scarce = MachineResources(cpus=2, total_memory=GiB, available_memory=20 * MiB)
        with mock.patch.object(environment, "machine_resources", return_value=scarce):
            with self.assertRaises(ClusterStartError) as caught:
                pool.acquire(Requirement(3, env=(("OTHER", "key"),)))
            d = caught.exception.diagnosis
            self.assertEqual(d.kind, "resources")
            self.assertEqual(d.problem, "3 more node(s) would not fit on this machine")
            self.assertIn("a cluster of 3 nodes needs about", d.cause)
            self.assertIn("reduce", d.steps[0])
            self.assertIn("--simulate", d.steps[1])
            self.assertEqual(self.kinds("cluster_retry"), [])
            # growing the idle cluster is refused the same way
            with self.assertRaises(ClusterStartError) as grown:
                pool.acquire(Requirement(4))
            self.assertEqual(grown.exception.diagnosis.problem,
                             "3 more node(s) would not fit on this machine")
            # simulated nodes are threads of this process: they need no such room
            simulated = pool.acquire(Requirement(3, env=(("OTHER", "key"),), simulated=True))
            self.assertEqual(simulated.call_all(nf.add, 2, 2), [4, 4, 4])
        self.assertEqual(pool.acquire(Requirement(1))[0].pid, small[0].pid)


# -- end to end ------------------------------------------------------------------------------
class FailureSample(Sample):
    """A temporary copy of ``tests/samples_failures/<name>`` (see tests.test_runner_e2e)."""

    def __init__(self, add_cleanup, name: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"disttest-e2e-{name}-"))
        add_cleanup(shutil.rmtree, self.tmp, True)
        self.root = self.tmp / name
        shutil.copytree(SAMPLES / name, self.root, ignore=shutil.ignore_patterns("__pycache__"))
        self.state = self.tmp / "state"
        self.runs = 0


def verbose_line(output: str, test_id: str) -> str:
    """The ``-v`` line of ``test_id`` (its method name, its id, maybe its cluster)."""
    method = test_id.rsplit(".", 1)[1]
    cls = test_id.rsplit(".", 1)[0]
    match = re.search(rf"^{method} \(({re.escape(test_id)}|{re.escape(cls)})\).*$", output, re.M)
    if not match:
        raise AssertionError(f"no -v line for {test_id} in:\n{output}")
    return match.group(0)


FAST = {"DISTTEST_RETRY_BACKOFF": "0.02"}
HEALTHY = "tests.test_a_healthy.Healthy"
BROKEN = "tests.test_broken.Broken"
CRASH_STATUS = r"node node-\d exited during start-up with status 1"


class Fallbacks(unittest.TestCase):
    """The startfail sample: Healthy starts, Broken's nodes die while starting."""

    def setUp(self):
        self.sample = FailureSample(self.addCleanup, "startfail")

    def run_sample(self, *args, env=None):
        return self.sample.run("-v", *args, env={**FAST, **(env or {})}, report=True)

    def assert_healthy_ran(self, run):
        self.assertTrue(verbose_line(run.stderr, HEALTHY + ".test_runs_on_two_nodes")
                        .endswith("... ok"), run)
        self.assertEqual(self.sample.read_log()[HEALTHY + ".test_runs_on_two_nodes"]["nodes"], 2)

    def test_fail_errors_the_class_with_the_diagnosis(self):
        run = self.run_sample("--fallback", "fail", "tests.test_a_healthy", "tests.test_broken")
        self.assertEqual(run.returncode, run.unittest_status(), run)
        self.assertEqual(run.counts(), {"run": 1, "status": "FAILED", "errors": 1}, run)
        self.assert_healthy_ran(run)
        error = run.stderr[run.stderr.index(f"ERROR: setUpClass ({BROKEN})"):]
        self.assertRegex(error, r"disttest\.errors\.ClusterStartError: " + CRASH_STATUS)
        self.assertIn("No module named 'encodings'", error)
        self.assertIn("fix:   run: python -m disttest preflight", error)
        self.assertEqual(run.report["fallbacks"][0]["policy"], "fail")
        self.assertRegex(run.stderr, rf"(?m)^  fail: {BROKEN} — {CRASH_STATUS}$")
        self.assertEqual(len(run.agents), 2, "Broken's nodes die before they run any Python")

    def test_skip_skips_the_class_with_the_diagnosis_as_reason(self):
        run = self.run_sample("--fallback", "skip", "tests.test_a_healthy", "tests.test_broken")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 1, "status": "OK", "skipped": 1}, run)
        self.assert_healthy_ran(run)
        # (Python 3.9's unittest prints a class-level skip without its description.)
        self.assertRegex(run.stderr, rf"(?m)^(setUpClass \({BROKEN}\) \.\.\. )?skipped "
                                     rf"[\"']cluster could not start: {CRASH_STATUS}\\n  cause: "
                                     r"the node process failed before it was ready")
        self.assertEqual([(f["class"], f["policy"]) for f in run.report["fallbacks"]],
                         [(BROKEN, "skip")])
        self.assertRegex(run.report["fallbacks"][0]["detail"], CRASH_STATUS)
        self.assertRegex(run.stderr, rf"(?m)^  skip: {BROKEN} — {CRASH_STATUS}$")
        # retries are visible while they happen, then the diagnosis once
        self.assertEqual(len(re.findall(r"cluster start failed \(.*\); retry 1/2 in", run.stderr)),
                         1, run)
        self.assertEqual(len(re.findall(r"; retry 2/2 in \d", run.stderr)), 1, run)
        self.assertEqual(run.report["diagnoses"][0]["kind"], "node-start-crash")

    def test_simulate_runs_the_class_on_simulated_nodes(self):
        run = self.run_sample("--fallback", "simulate", "tests.test_a_healthy",
                              "tests.test_broken")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 3, "status": "OK", "skipped": 1}, run)
        self.assert_healthy_ran(run)
        line = verbose_line(run.stderr, BROKEN + ".test_runs_on_its_nodes")
        self.assertRegex(line, r"\[simulated cluster c\d+-[0-9a-f]{4}\] \.\.\. ok$")
        self.assertTrue(verbose_line(run.stderr, BROKEN + ".test_needs_real_processes").endswith(
            "skipped 'needs real node processes; this cluster is simulated'"))
        self.assertTrue(self.sample.read_log()[BROKEN + ".test_runs_on_its_nodes"]["simulated"])
        clusters = {c["classes"][0]: c for c in run.report["clusters"]}
        self.assertEqual((clusters[BROKEN]["simulated"], clusters[BROKEN]["size"]), (True, 3))
        self.assertFalse(clusters[HEALTHY]["simulated"])
        self.assertEqual(run.report["fallbacks"][0]["policy"], "simulate")
        self.assertRegex(run.stderr, rf"(?m)^  simulate: {BROKEN} — ran on 3 simulated nodes: "
                                     rf"{CRASH_STATUS}$")
        self.assertIn("simulated nodes share the test process's environment; node_env is not "
                      "applied", run.stderr)
        self.assertEqual(len(run.agents), 2, "simulated nodes are not processes")

    def test_a_class_fallback_attribute_overrides_the_run(self):
        run = self.run_sample("--fallback", "fail", "tests.test_a_healthy",
                              "tests.test_broken_skip.BrokenSkips")
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 1, "status": "OK", "skipped": 1}, run)
        self.assertEqual([(f["class"], f["policy"]) for f in run.report["fallbacks"]],
                         [("tests.test_broken_skip.BrokenSkips", "skip")])

    def test_one_diagnosis_per_problem_however_many_classes_hit_it(self):
        run = self.run_sample("--fallback", "fail", "tests.test_broken", "tests.test_broken_skip")
        self.assertEqual(run.returncode, run.unittest_status(), run)
        self.assertEqual(run.counts(), {"run": 0, "status": "FAILED", "errors": 2,
                                        "skipped": 1}, run)
        self.assertEqual(run.stderr.count("could not start after 3 attempt(s):"), 1, run)
        self.assertEqual(len(re.findall(r"starting cluster c\d+-\w+ \(3 nodes", run.stderr)), 3)
        self.assertEqual(len(run.report["diagnoses"]), 1, run.report["diagnoses"])
        problems = run.stderr[run.stderr.index("\nProblems"):]
        self.assertEqual(len(re.findall(CRASH_STATUS, problems)), 1, problems)
        # ... but every class is listed with what happened to it
        self.assertEqual(sorted((f["class"], f["policy"]) for f in run.report["fallbacks"]),
                         [(BROKEN, "fail"), ("tests.test_broken_skip.BrokenAgain", "fail"),
                          ("tests.test_broken_skip.BrokenSkips", "skip")])
        for name in (BROKEN, "tests.test_broken_skip.BrokenAgain"):
            self.assertRegex(run.stderr, rf"(?m)^  fail: {name} — {CRASH_STATUS}$")
        self.assertRegex(run.stderr, r"(?m)^  skip: tests\.test_broken_skip\.BrokenSkips — ")

    def test_reduce_runs_the_class_on_the_largest_size_that_starts(self):
        low, high = free_range(7)  # 5 or 4 nodes x 2 ports do not fit, 3 do
        run = self.run_sample("--fallback", "reduce", "tests.test_a_healthy", "tests.test_wide",
                              env={"DISTTEST_PORT_RANGE": f"{low}-{high}",
                                   "DISTTEST_MAX_CLUSTER_SIZE": "5"})
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 2, "status": "OK"}, run)
        self.assert_healthy_ran(run)
        seen = self.sample.read_log()["tests.test_wide.Wide.test_runs_on_what_could_start"]
        self.assertEqual(seen["nodes"], 3)
        self.assertEqual(seen["ports"], [["admin", "app"]] * 3)
        self.assertEqual(run.report["fallbacks"],
                         [{"class": "tests.test_wide.Wide", "policy": "reduce",
                           "detail": "reduced from 5 to 3 nodes"}])
        self.assertIn("  reduce: tests.test_wide.Wide — reduced from 5 to 3 nodes", run.stderr)
        self.assertIn(f"port_range {low}-{high} has only 7 free port(s), 10 needed", run.stderr)
        self.assertEqual(sorted(c["size"] for c in run.report["clusters"]), [2, 3])
        self.assertEqual(len(run.agents), 5)

    def test_reduce_without_a_smaller_size_says_so_and_fails(self):
        run = self.run_sample("--fallback", "reduce", "tests.test_broken",
                              env={"DISTTEST_STARTUP_RETRIES": "0"})
        self.assertEqual(run.returncode, run.unittest_status(), run)
        detail = run.report["fallbacks"][0]["detail"]
        self.assertTrue(detail.startswith("could not reduce (min_cluster_size is not set): "),
                        detail)
        self.assertRegex(detail, CRASH_STATUS)

    def test_reduce_below_min_cluster_size_is_refused(self):
        low, high = free_range(5)  # not even 3 nodes x 2 ports
        run = self.run_sample("--fallback", "reduce", "tests.test_wide",
                              env={"DISTTEST_PORT_RANGE": f"{low}-{high}",
                                   "DISTTEST_MAX_CLUSTER_SIZE": "5",
                                   "DISTTEST_STARTUP_RETRIES": "0"})
        self.assertEqual(run.returncode, run.unittest_status(), run)
        self.assertEqual(run.counts(), {"run": 0, "status": "FAILED", "errors": 1}, run)
        self.assertEqual(run.report["fallbacks"][0]["detail"],
                         "could not reduce (no size down to 3 nodes started either): "
                         f"port_range {low}-{high} has only 5 free port(s), 10 needed")
        self.assertEqual(len(re.findall(r"starting cluster c\d+-\w+ \((\d) nodes", run.stderr)), 3)
        self.assertEqual(run.agents, [])

    def test_simulate_cannot_make_up_for_missing_ports(self):
        low, high = free_range(7)
        run = self.run_sample("--fallback", "simulate", "tests.test_wide",
                              env={"DISTTEST_PORT_RANGE": f"{low}-{high}",
                                   "DISTTEST_MAX_CLUSTER_SIZE": "5",
                                   "DISTTEST_STARTUP_RETRIES": "0"})
        self.assertEqual(run.returncode, run.unittest_status(), run)
        self.assertIn(f"PortRangeExhausted: port_range {low}-{high} has only 7 free port(s), "
                      "10 needed", run.stderr)
        self.assertEqual(run.report["fallbacks"],
                         [{"class": "tests.test_wide.Wide", "policy": "simulate",
                           "detail": f"could not simulate either: port_range {low}-{high} has "
                                     "only 7 free port(s), 10 needed"}])
        self.assertIn("  simulate: tests.test_wide.Wide — could not simulate either: ", run.stderr)

    def test_default_is_skip_on_a_developer_machine(self):
        run = self.sample.run("--no-ci", "tests.test_a_healthy", "tests.test_broken", env=FAST,
                              report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 1, "status": "OK", "skipped": 1}, run)
        self.assertEqual(run.report["fallbacks"][0]["policy"], "skip")
        self.assertFalse(run.report["ci"])
        self.assertNotIn("CI detected", run.stderr)

    def test_default_is_fail_in_ci(self):
        run = self.sample.run("tests.test_a_healthy", "tests.test_broken",
                              env={**FAST, "CI": "true"}, report=True)
        self.assertEqual(run.returncode, run.unittest_status(), run)
        self.assertEqual(run.counts(), {"run": 1, "status": "FAILED", "errors": 1}, run)
        self.assertIn("disttest: CI detected (CI): fallback fail", run.stderr)
        self.assertEqual(run.report["fallbacks"][0]["policy"], "fail")
        self.assertTrue(run.report["ci"])

    def test_a_host_that_does_not_resolve_warns_and_runs(self):
        run = self.sample.run("tests.test_a_healthy",
                              env={"DISTTEST_HOST": "no-such-host.invalid"})
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stderr, r"disttest: host 'no-such-host\.invalid' could not be "
                                     r"resolved \(.*\); falling back to 127\.0\.0\.1\. Set `host` "
                                     r"to an IP address")
        self.assertEqual(run.counts(), {"run": 1, "status": "OK"})


class NodeCrashes(unittest.TestCase):
    """The crash sample, run once: a crash mid-test, a kill on purpose, a failed setUpCluster."""

    @classmethod
    def setUpClass(cls):
        cls.sample = FailureSample(cls.addClassCleanup, "crash")
        cls.run_ = cls.sample.run("-v", report=True)
        cls.report = cls.run_.report

    def test_outcomes(self):
        run = self.run_
        self.assertEqual(run.returncode, run.unittest_status(), run)
        self.assertEqual(run.counts(), {"run": 4, "status": "FAILED", "errors": 2}, run)
        for test_id in ("tests.test_crash.BAfterTheCrash.test_the_cluster_was_repaired",
                        "tests.test_crash.CKillsOnPurpose.test_a_killed_node_raises_node_crashed",
                        "tests.test_crash.EAfterTheFailedSetup.test_the_cluster_still_works"):
            self.assertTrue(verbose_line(run.stderr, test_id).endswith("... ok"), test_id)
        self.assertNotIn("ran after a failed setUpCluster", run.output)

    def test_a_crash_mid_test_fails_it_with_the_nodes_log(self):
        stderr = self.run_.stderr
        error = stderr[stderr.index("ERROR: test_node_dies_during_a_call"):]
        error = error[:error.index("\n=====") if "\n=====" in error else None]
        self.assertIn("disttest.errors.NodeCrashedError: node node-1 is not running "
                      "(exit status 3) during die", error)
        self.assertIn("its log ends with:", error)
        self.assertIn("journal flushed, exiting now", error)
        self.assertRegex(stderr, r"disttest: node node-1 \(pid \d+\) crashed: exit status 3")

    def test_crashes_counted_and_nodes_replaced(self):
        self.assertEqual(self.report["node_crashes"], 1, "a kill on purpose is not a crash")
        self.assertEqual(len(self.report["clusters"]), 1)
        # the crashed node-1 and the killed node-0, each replaced at the next reset
        self.assertEqual(self.report["clusters"][0]["nodes_replaced"], 2)
        self.assertIn("  node crashes: 1", self.run_.stderr)
        replaced = re.findall(r"node (node-\d) of cluster c\d+-\w+ replaced: the node was not "
                              r"running", self.run_.stderr)
        self.assertEqual(replaced, ["node-1", "node-0"])

    def test_a_failed_set_up_cluster_is_one_diagnosis(self):
        stderr, report = self.run_.stderr, self.report
        problem = ("setUpCluster of tests.test_crash.DSetupFails failed: RuntimeError: "
                   "fixture data missing")
        self.assertEqual(stderr.count(f"problem:\n    {problem}"), 1, self.run_)
        self.assertIn("ERROR: setUpClass (tests.test_crash.DSetupFails)", stderr)
        self.assertEqual([d["problem"] for d in report["diagnoses"]], [problem])
        diagnosis = report["diagnoses"][0]
        self.assertEqual(diagnosis["kind"], "setup-cluster")
        self.assertIn("node logs end with", diagnosis["cause"])
        self.assertIn("loading fixtures from /srv/fixtures", diagnosis["cause"])
        problems = stderr[stderr.index("\nProblems"):]
        self.assertEqual(problems.count(problem), 1)
        self.assertEqual(report["fallbacks"], [])


if __name__ == "__main__":
    unittest.main()
