"""``python -m disttest`` end to end, on the sample projects in ``tests/samples/``.

Each test copies a sample project to a temporary directory, runs
``python -m disttest`` there in a subprocess and asserts on its output, exit
status and ``--json-report``. A ``sitecustomize`` on the subprocess's path
(``tests/samples/_spy``) records the pid of every node agent that starts,
spawned or forked from a node template, and of every template, so the tests
count nodes without trusting disttest's own numbers, and check after every run
that each of those processes is gone and that the run left no port lock or
cluster temporary directory (found with ``tests.support``'s helpers).

The helpers here (:class:`Sample`, :class:`Run`) serve
``tests/test_unittest_compat.py`` too.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path

import psutil

from disttest.environment import CI_PROVIDERS
from tests import support

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLES = HERE / "samples"
SPY = SAMPLES / "_spy"
ANSI = "\x1b["
_CLUSTER_ID = re.compile(r"\b(?:w\d+-)?c\d+-[0-9a-f]{4}\b")
_RAN = re.compile(r"^Ran (\d+) tests? in \d+\.\d+s$", re.M)
_TIMING = re.compile(r"^(Ran \d+ tests?) in \d+\.\d+s$", re.M)


def clean_environ(extra: dict | None = None) -> dict:
    """This environment without CI detection or disttest settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in CI_PROVIDERS and not k.startswith(("DISTTEST_", "SAMPLE_"))
           and k not in ("NO_COLOR", "FORCE_COLOR", "PYTHONSTARTUP", "PYTHONWARNINGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(SPY)])
    env.update(extra or {})
    return env


def spied(log: Path) -> tuple[list[int], list[int]]:
    """The pids the spy recorded in ``log``: the nodes, and the node templates.

    A line ``-<pid>`` takes back one earlier ``<pid>``: a template child that
    went on to run a command (see the spy's docstring)."""
    def pids(path: Path) -> list[int]:
        found: list[int] = []
        for line in path.read_text().split() if path.exists() else ():
            if line.startswith("-"):
                found.remove(int(line[1:]))
            else:
                found.append(int(line))
        return found

    return pids(log), pids(log.with_name(log.name + ".templates"))


def normalize(text: str) -> str:
    """Output with run times taken out ("Ran 3 tests in 0.012s" -> "Ran 3 tests")."""
    return _TIMING.sub(r"\1", text)


def result_counts(stderr: str) -> dict:
    """unittest's closing lines as numbers: run, status and each count it lists."""
    found = _RAN.findall(stderr)
    if not found:
        raise AssertionError(f"no 'Ran N tests' line in:\n{stderr}")
    counts = {"run": int(found[-1])}
    tail = stderr[list(_RAN.finditer(stderr))[-1].end():].strip().splitlines()
    status = tail[0] if tail else ""
    match = re.match(r"^(OK|FAILED|NO TESTS RAN)(?: \((.*)\))?$", status)
    if not match:
        raise AssertionError(f"no result line after 'Ran': {status!r}")
    counts["status"] = match.group(1)
    for item in filter(None, (match.group(2) or "").split(", ")):
        name, value = item.split("=")
        counts[name] = int(value)
    return counts


class Run:
    """What one subprocess did."""

    def __init__(self, args, proc: subprocess.Popen, stdout: str, stderr: str,
                 agents: list[int], report: dict | None, started: float = 0.0,
                 templates: list[int] = ()) -> None:
        self.args = args
        self.started = started  # time.time() just before the process started
        self.pid = proc.pid
        self.returncode = proc.returncode
        self.stdout = stdout
        self.stderr = stderr
        self.agents = agents  # the nodes started, spawned or forked
        self.templates = list(templates)  # the node templates started
        self.report = report

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def counts(self) -> dict:
        return result_counts(self.stderr)

    def unittest_status(self) -> int:
        """The exit status this Python's unittest gives a run with these counts."""
        counts = self.counts()
        return support.unittest_exit_status(counts["run"], counts.get("skipped", 0),
                                            counts["status"] == "OK")

    def cluster_ids(self) -> set[str]:
        return set(_CLUSTER_ID.findall(self.output))

    def __str__(self) -> str:
        return (f"$ {' '.join(map(str, self.args))}\nexit status {self.returncode}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


class Sample:
    """A temporary copy of ``tests/samples/<name>``, removed by ``add_cleanup``
    (a test's ``addCleanup``, or a class's ``addClassCleanup``)."""

    def __init__(self, add_cleanup, name: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"disttest-e2e-{name}-"))
        add_cleanup(shutil.rmtree, self.tmp, True)
        self.root = self.tmp / name
        shutil.copytree(SAMPLES / name, self.root,
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.state = self.tmp / "state"
        self.runs = 0

    def path(self, name: str) -> Path:
        return self.tmp / name

    def read_lines(self, name: str) -> list[str]:
        path = self.path(name)
        return path.read_text().splitlines() if path.exists() else []

    def read_log(self, name: str = "log.jsonl") -> dict[str, dict]:
        """``$SAMPLE_LOG`` entries by test id."""
        return {entry["id"]: entry for entry in map(json.loads, self.read_lines(name))}

    def env(self, extra: dict | None = None) -> dict:
        return clean_environ({"DISTTEST_STATE_DIR": str(self.state),
                              "SAMPLE_MARKERS": str(self.path("markers.txt")),
                              "SAMPLE_LOG": str(self.path("log.jsonl")),
                              **(extra or {})})

    def start(self, *args, module: str | None = "disttest", env: dict | None = None,
              report: bool = False) -> tuple[subprocess.Popen, list, dict]:
        """Start ``python -m <module> *args`` (``module=None``: ``python *args``)."""
        self.runs += 1
        for name in ("markers.txt", "log.jsonl"):
            self.path(name).unlink(missing_ok=True)
        spy = self.path(f"agents-{self.runs}.txt")
        full_args = list(args)
        meta = {"spy": spy, "report": None, "started": time.time()}
        if report:
            meta["report"] = self.path(f"report-{self.runs}.json")
            full_args += ["--json-report", str(meta["report"])]
        argv = [sys.executable] + (["-m", module] if module else []) + full_args
        proc = subprocess.Popen(argv, cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=self.env({"SAMPLE_SPY_LOG": str(spy), **(env or {})}))
        return proc, full_args, meta

    def finish(self, proc: subprocess.Popen, args, meta: dict, timeout: float = 90) -> Run:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"timed out after {timeout}s: {args}\n{stdout}\n{stderr}")
        agents, templates = spied(meta["spy"])
        report = None
        if meta["report"] is not None and meta["report"].exists():
            report = json.loads(meta["report"].read_text())
        run = Run(args, proc, stdout, stderr, agents, report, meta["started"], templates)
        self.check_no_leaks(run)
        return run

    def run(self, *args, module: str | None = "disttest", env: dict | None = None,
            report: bool = False, timeout: float = 90) -> Run:
        proc, full_args, meta = self.start(*args, module=module, env=env, report=report)
        return self.finish(proc, full_args, meta, timeout)

    @staticmethod
    def check_no_leaks(run: Run, wait: float = 5.0) -> None:
        """No node agent or template of the run alive, no port lock or cluster
        temp dir left.

        Only what the run made counts: the agents and templates the spy saw, agents of ours
        (``tests.support``) started since the run began, port locks naming the
        run's pid written since then (a crashed process of another test may
        have left locks under a pid the system has since given to this run),
        and temp dirs of the cluster ids in its output.
        """
        def live_agents() -> list[int]:
            pids = set(run.agents) | set(run.templates)
            for proc in support.our_processes():
                try:
                    if proc.create_time() >= run.started - 1:
                        pids.add(proc.pid)
                except psutil.Error:
                    pass
            live = []
            for pid in sorted(pids):
                try:
                    proc = psutil.Process(pid)
                    if (proc.status() != psutil.STATUS_ZOMBIE
                            and "disttest.agent" in " ".join(proc.cmdline())):
                        live.append(pid)
                except psutil.Error:
                    pass
            return live

        def new_locks() -> list[str]:
            found = []
            for path in support.our_lock_files(pid=run.pid):
                try:
                    if path.stat().st_mtime >= run.started - 1:
                        found.append(str(path))
                except OSError:
                    pass  # released while we looked
            return found

        def leftovers() -> dict:
            found = {"node processes": live_agents(), "port locks": new_locks(),
                     "temp dirs": support.our_temp_dirs(run.cluster_ids(),
                                                        support.run_owner(run))}
            return {what: items for what, items in found.items() if items}

        if not support.wait_for(lambda: not leftovers(), timeout=wait):
            raise AssertionError(f"left behind by the run: {leftovers()}\n{run}")


def described(test_id: str) -> str:
    """How unittest names a test in its output: "method (id)" from Python 3.11 on,
    "method (module.Class)" before."""
    class_path, method = test_id.rsplit(".", 1)
    return f"{method} ({test_id if sys.version_info >= (3, 11) else class_path})"


def ids_with_status(output: str, status: str) -> list[str]:
    """Ids of the ``-v`` lines ending in ``status`` ("ok", "skipped ..."), in order."""
    found = re.findall(r"^(\w+) \(([\w.]+)\)(?: \[cluster (?:w\d+-)?c\d+-[0-9a-f]{4}\])? \.\.\. "
                       + re.escape(status), output, re.M)
    return [where if where.endswith("." + method) else f"{where}.{method}"
            for method, where in found]


# -- the mixed sample: planning, reuse, selection ------------------------------------
MIXED_CLUSTER_TESTS = {
    # test id: nodes the test sees in the default run
    "tests.test_small.Two.test_two_nodes": 2,
    "tests.test_small.Three.test_three_nodes": 3,
    "tests.test_small.Three.test_three_smoke": 3,
    "tests.test_modfix.ModSmall.test_modsmall": 2,
    "tests.test_modfix.ModBig.test_modbig": 3,
    "tests.test_big.MethodSized.test_class_size": 2,
    "tests.test_big.MethodSized.test_four": 4,
    "tests.test_big.Five.test_five_nodes": 5,
    "tests.test_big.Fresh.test_fresh": 2,
    "tests.test_big.WithEnv.test_env_on_every_node": 2,
}
MIXED_PLAIN_TESTS = {
    "tests.test_plain.PlainFirst.test_plainonly_one",
    "tests.test_plain.PlainFirst.test_plainonly_smoke",
    "tests.test_plain.PlainCurrentCluster.test_plainonly_current_cluster",
    "tests.test_modfix.ModPlain.test_modplain",
    "tests.test_modfix.ModTail.test_modtail",
}
SHARED_CLASSES = ["tests.test_small.Two", "tests.test_modfix.ModBig",
                  "tests.test_modfix.ModSmall", "tests.test_small.Three",
                  "tests.test_big.MethodSized", "tests.test_big.Five"]


def summary_numbers(stderr: str) -> dict:
    match = re.search(r"^  clusters started: (\d+) \((\d+) node\(s\)\), reused: (\d+), "
                      r"grown: (\d+)", stderr, re.M)
    if not match:
        raise AssertionError(f"no cluster usage summary in:\n{stderr}")
    return dict(zip(("cluster_starts", "nodes_started", "cluster_reuses", "cluster_grows"),
                    map(int, match.groups())))


class MixedSampleRun(unittest.TestCase):
    """The whole mixed sample, planned: one shared cluster grows 2 -> 5."""

    @classmethod
    def setUpClass(cls):
        # One run serves every test of this class.
        cls.sample = Sample(cls.addClassCleanup, "mixed")
        cls.run_ = cls.sample.run("-v", report=True)
        cls.log = cls.sample.read_log()
        cls.markers = cls.sample.read_lines("markers.txt")

    def test_exit_status_and_counts(self):
        run = self.run_
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 15, "status": "OK"}, run)
        self.assertEqual(run.report["tests_run"], 15)
        self.assertTrue(run.report["successful"])

    def test_clusters_started_grown_and_reused(self):
        report = self.run_.report
        # Two starts the shared cluster; ModBig, MethodSized and Five grow it; ModSmall
        # and Three reuse it; Fresh and WithEnv (other env) each start their own.
        self.assertEqual((report["cluster_starts"], report["cluster_grows"],
                          report["cluster_reuses"], report["nodes_started"]), (3, 3, 2, 9),
                         self.run_)
        self.assertEqual(len(self.run_.agents), 9, "node processes really started")
        # By default every node is forked, from one template (one configuration).
        self.assertEqual(len(self.run_.templates), 1, self.run_)

    def test_clusters_in_report(self):
        clusters = self.run_.report["clusters"]
        self.assertEqual([c["classes"] for c in clusters],
                         [SHARED_CLASSES, ["tests.test_big.Fresh"], ["tests.test_big.WithEnv"]])
        self.assertEqual([c["tests"] for c in clusters], [8, 1, 1])
        self.assertEqual([c["size"] for c in clusters], [5, 2, 2])
        self.assertEqual(len({c["id"] for c in clusters}), 3)

    def test_each_test_saw_its_cluster(self):
        self.assertEqual(set(self.log), set(MIXED_CLUSTER_TESTS) | MIXED_PLAIN_TESTS)
        for test_id, nodes in MIXED_CLUSTER_TESTS.items():
            with self.subTest(test_id):
                self.assertEqual(self.log[test_id]["nodes"], nodes)
        shared = {self.log[t]["cluster"] for t in MIXED_CLUSTER_TESTS
                  if ".Fresh." not in t and ".WithEnv." not in t}
        self.assertEqual(len(shared), 1, shared)
        fresh = self.log["tests.test_big.Fresh.test_fresh"]["cluster"]
        env = self.log["tests.test_big.WithEnv.test_env_on_every_node"]
        self.assertEqual(len(shared | {fresh, env["cluster"]}), 3)
        self.assertEqual(env["env"], ["from-node-env", "from-node-env"])
        self.assertEqual(self.log["tests.test_big.MethodSized.test_four"]["names"],
                         ["node-0", "node-1", "node-2", "node-3"])
        for test_id in MIXED_PLAIN_TESTS:
            self.assertIsNone(self.log[test_id]["cluster"], test_id)
        # Without --force-cluster a plain test has no current cluster.
        self.assertIsNone(self.log["tests.test_plain.PlainCurrentCluster."
                                   "test_plainonly_current_cluster"]["current"])

    def test_plain_tests_run_first_then_clusters_by_size(self):
        order = [t for t in self.log]  # the log is written in run order
        first_cluster = min(order.index(t) for t in MIXED_CLUSTER_TESTS)
        plain_outside_modules = [t for t in MIXED_PLAIN_TESTS if "test_modfix" not in t]
        self.assertTrue(all(order.index(t) < first_cluster for t in plain_outside_modules),
                        order)
        shared = [t for t in order if t in MIXED_CLUSTER_TESTS
                  and ".Fresh." not in t and ".WithEnv." not in t]
        self.assertEqual(shared[0], "tests.test_small.Two.test_two_nodes")
        self.assertEqual(shared[-1], "tests.test_big.Five.test_five_nodes")

    def test_module_fixtures_run_once_around_the_module(self):
        markers = self.markers
        for marker in ("setUpModule", "tearDownModule", "moduleCleanup",
                       "setUpClass ModSmall", "tearDownClass ModSmall"):
            self.assertEqual(markers.count(marker), 1, (marker, markers))
        inside = [m for m in markers if m.startswith("test_")]
        self.assertEqual(sorted(inside), ["test_modbig", "test_modplain", "test_modsmall",
                                          "test_modtail"])
        self.assertEqual(markers[0], "setUpModule")
        self.assertEqual(markers[-2:], ["tearDownModule", "moduleCleanup"])

    def test_verbose_lines_name_the_cluster(self):
        output = self.run_.stderr
        for test_id in MIXED_CLUSTER_TESTS:
            cls_name, method = test_id.rsplit(".", 1)
            cluster = self.log[test_id]["cluster"]
            with self.subTest(test_id):
                self.assertIn(f"{described(test_id)} [cluster {cluster}] ... ok", output)
        for test_id in MIXED_PLAIN_TESTS:
            method = test_id.rsplit(".", 1)[1]
            self.assertIn(f"{described(test_id)} ... ok", output)

    def test_summary_agrees_with_the_report(self):
        stderr, report = self.run_.stderr, self.run_.report
        ran = stderr.index("\nRan 15 tests")
        usage = stderr.index("\nCluster usage\n")
        self.assertLess(ran, usage, "the summary comes after unittest's result")
        numbers = summary_numbers(stderr)
        self.assertEqual(numbers, {k: report[k] for k in numbers})
        for cluster in report["clusters"]:
            self.assertRegex(stderr, rf"(?m)^  {cluster['id']}\s+{cluster['size']}\s+\S+\s+"
                                     rf"{len(cluster['classes'])}\s+{cluster['tests']}\s+0\b")
        self.assertIn("reuse saved 5 cluster start(s): 8 cluster class(es) served by "
                      "3 start(s)", stderr)
        self.assertTrue(stderr.rstrip().endswith("disttest: 15 passed, 0 failed, 0 skipped"))

    def test_piped_output_has_no_colour(self):
        self.assertNotIn(ANSI, self.run_.output)


class MixedSampleOptions(unittest.TestCase):
    """Selection and planning options on the mixed sample, one run each."""

    def setUp(self):
        self.sample = Sample(self.addCleanup, "mixed")

    def test_plan_prints_groups_in_order_and_starts_nothing(self):
        run = self.sample.run("--plan")
        self.assertEqual(run.returncode, 0, run)
        lines = run.stdout.splitlines()
        expected = [
            "plain tests (no cluster): 3 test(s) in 2 class(es) or module(s)",
            "group 1: 2 nodes — starts cluster #1, 1 test(s)",
            "    tests.test_small.Two (1 test(s))",
            "group 2: 3 nodes — grows cluster #1, 6 test(s)",
            "    tests.test_modfix.ModBig (1 test(s))",
            "    tests.test_modfix.ModPlain (1 test(s))",
            "    tests.test_modfix.ModSmall (1 test(s))",
            "    tests.test_modfix.ModTail (1 test(s))",
            "    tests.test_small.Three (2 test(s))",
            "group 3: 4 nodes — grows cluster #1, 2 test(s)",
            "    tests.test_big.MethodSized (2 test(s))",
            "group 4: 5 nodes — grows cluster #1, 1 test(s)",
            "    tests.test_big.Five (1 test(s))",
            "group 5: 2 nodes, fresh — starts cluster #2, 1 test(s)",
            "    tests.test_big.Fresh (1 test(s))",
            "group 6: 2 nodes, env MIXED_MODE=from-node-env — starts cluster #3, 1 test(s)",
            "    tests.test_big.WithEnv (1 test(s))",
            "15 test(s); 3 cluster start(s) for 8 cluster class(es)",
        ]
        self.assertEqual(lines, expected, run)
        self.assertNotIn("Ran ", run.output)
        self.assertEqual(run.agents, [], "--plan started node processes")
        self.assertEqual(self.sample.read_lines("markers.txt"), [], "--plan ran fixtures")
        self.assertEqual(self.sample.read_log(), {}, "--plan ran tests")

    def test_plan_honours_selection_and_no_distributed(self):
        run = self.sample.run("--plan", "--only", "replication")
        self.assertEqual(run.stdout.splitlines()[-1],
                         "1 test(s); 1 cluster start(s) for 1 cluster class(es)", run)
        run = self.sample.run("--plan", "--no-distributed")
        self.assertNotIn("group ", run.stdout)
        self.assertEqual(run.stdout.splitlines()[-1],
                         "15 test(s); 0 cluster start(s) for 0 cluster class(es)", run)
        self.assertEqual(run.agents, [])

    def test_no_reuse_starts_one_cluster_per_class(self):
        plan = self.sample.run("--plan", "--no-reuse")
        self.assertEqual(plan.stdout.splitlines()[-1],
                         "15 test(s); 8 cluster start(s) for 8 cluster class(es)", plan)
        run = self.sample.run("--no-reuse", report=True)
        self.assertEqual(run.returncode, 0, run)
        report = run.report
        self.assertEqual((report["cluster_starts"], report["cluster_reuses"],
                          report["cluster_grows"]), (8, 0, 0), run)
        # each class its own cluster, of its own size (MethodSized: its largest method)
        self.assertEqual(report["nodes_started"], 2 + 3 + 3 + 2 + 4 + 5 + 2 + 2)
        self.assertEqual(len(run.agents), report["nodes_started"])
        self.assertTrue(all(len(c["classes"]) == 1 for c in report["clusters"]))
        self.assertIn("reuse saved 0 cluster start(s): 8 cluster class(es) served by "
                      "8 start(s)", run.stderr)

    def test_only_distributed(self):
        run = self.sample.run("--only", "distributed", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual({t["id"] for t in run.report["tests"]}, set(MIXED_CLUSTER_TESTS))
        self.assertEqual(run.report["cluster_starts"], 3)
        self.assertEqual(set(self.sample.read_log()), set(MIXED_CLUSTER_TESTS))
        # the module's plain classes are left out, its fixtures still run once
        markers = self.sample.read_lines("markers.txt")
        self.assertEqual([m for m in markers if "odule" in m or m.startswith("test_")],
                         ["setUpModule", "test_modbig", "test_modsmall", "tearDownModule",
                          "moduleCleanup"])

    def test_node_start_spawn_starts_an_interpreter_per_node_and_no_template(self):
        run = self.sample.run("--only", "smoke", report=True, env={"DISTTEST_NODE_START": "spawn"})
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual((run.report["cluster_starts"], run.report["nodes_started"]), (1, 3))
        self.assertEqual((len(run.agents), run.templates), (3, []), run)

    def test_nodes_a_template_starts_as_interpreters_are_counted_once(self):
        # PYTHON* in node_env: each node needs an interpreter start of its own,
        # which a template child runs (exec) instead of the agent.
        (self.sample.root / "tests" / "test_pyenv.py").write_text(textwrap.dedent("""
            import sys
            import disttest

            def seed_fixed():
                return sys.flags.hash_randomization == 0

            class PythonEnv(disttest.DistributedTestCase):
                cluster_size = 2
                node_env = {"PYTHONHASHSEED": "0"}

                def test_each_node_started_an_interpreter(self):
                    self.assertEqual(self.cluster.call_all(seed_fixed), [True, True])
            """))
        run = self.sample.run("tests.test_pyenv", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.report["nodes_started"], 2)
        self.assertEqual((len(run.agents), len(run.templates)), (2, 1), run)

    def test_exclude_distributed_starts_no_cluster(self):
        run = self.sample.run("--exclude", "distributed", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual({t["id"] for t in run.report["tests"]}, MIXED_PLAIN_TESTS)
        self.assertEqual(run.report["cluster_starts"], 0)
        self.assertEqual(run.agents, [])
        self.assertNotIn("Cluster usage", run.output)
        self.assertNotIn("disttest:", run.output)

    def test_only_custom_tags(self):
        run = self.sample.run("--only", "smoke", report=True)
        self.assertEqual({t["id"] for t in run.report["tests"]},
                         {"tests.test_plain.PlainFirst.test_plainonly_smoke",
                          "tests.test_small.Three.test_three_smoke"}, run)
        self.assertEqual((run.report["cluster_starts"], run.report["nodes_started"]), (1, 3))
        self.assertEqual(len(run.agents), 3)
        run = self.sample.run("--only", "replication", report=True)
        self.assertEqual([t["id"] for t in run.report["tests"]],
                         ["tests.test_small.Two.test_two_nodes"], run)
        self.assertEqual((run.report["cluster_starts"], run.report["nodes_started"]), (1, 2))
        run = self.sample.run("--only", "smoke", "--exclude", "distributed", report=True)
        self.assertEqual([t["id"] for t in run.report["tests"]],
                         ["tests.test_plain.PlainFirst.test_plainonly_smoke"], run)
        self.assertEqual(run.agents, [])

    def test_k_selecting_plain_tests_starts_no_cluster(self):
        run = self.sample.run("-k", "plainonly", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 3, "status": "OK"})
        self.assertEqual(run.report["cluster_starts"], 0)
        self.assertEqual(run.agents, [])
        self.assertNotIn("Cluster usage", run.output)

    def test_k_selecting_a_method_sizes_the_cluster_for_it(self):
        # Only test_class_size of MethodSized: its test_four (4 nodes) is not selected.
        run = self.sample.run("-k", "test_class_size", report=True)
        self.assertEqual(run.counts(), {"run": 1, "status": "OK"}, run)
        self.assertEqual(run.report["nodes_started"], 2)

    def test_no_distributed_skips_each_cluster_test_with_the_reason(self):
        run = self.sample.run("-v", "--no-distributed", report=True)
        self.assertEqual(run.returncode, 0, run)
        reason = "skipped 'cluster tests are turned off (--no-distributed)'"
        self.assertEqual(sorted(ids_with_status(run.stderr, reason)), sorted(MIXED_CLUSTER_TESTS))
        self.assertEqual(sorted(ids_with_status(run.stderr, "ok")), sorted(MIXED_PLAIN_TESTS))
        self.assertEqual(run.counts(), {"run": 15, "status": "OK", "skipped": 10})
        self.assertEqual(run.report["cluster_starts"], 0)
        self.assertEqual(run.agents, [])
        self.assertEqual(set(self.sample.read_log()), MIXED_PLAIN_TESTS)
        markers = self.sample.read_lines("markers.txt")
        self.assertEqual(markers.count("setUpModule"), 1, markers)
        self.assertEqual(markers.count("tearDownModule"), 1, markers)

    def test_cluster_size_overrides_every_size(self):
        run = self.sample.run("--cluster-size", "2", report=True)
        self.assertEqual(run.returncode, 0, run)
        log = self.sample.read_log()
        for test_id in MIXED_CLUSTER_TESTS:
            self.assertEqual(log[test_id]["nodes"], 2, test_id)
        report = run.report
        self.assertEqual((report["cluster_starts"], report["cluster_grows"],
                          report["nodes_started"]), (3, 0, 6))
        self.assertEqual(len(run.agents), 6)

    def test_force_cluster_gives_plain_tests_a_current_cluster(self):
        run = self.sample.run("--force-cluster", "-k", "plainonly", report=True)
        self.assertEqual(run.returncode, 0, run)
        seen = self.sample.read_log()["tests.test_plain.PlainCurrentCluster."
                                      "test_plainonly_current_cluster"]
        self.assertEqual(seen["current"], 3)  # default_cluster_size
        self.assertEqual(seen["names"], ["node-0", "node-1", "node-2"])
        self.assertEqual(run.report["cluster_starts"], 1)
        self.assertEqual(len(run.agents), 3)

    def test_colour_only_when_forced(self):
        run = self.sample.run("-k", "Two", env={"FORCE_COLOR": "1"})
        self.assertEqual(run.returncode, 0, run)
        self.assertIn(ANSI, run.stderr, "FORCE_COLOR should colour piped output")
        run = self.sample.run("-k", "Two", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
        self.assertIn("Cluster usage", run.stderr)
        self.assertNotIn(ANSI, run.output)

    def test_plain_only_selection_prints_what_unittest_prints(self):
        for args in (["-k", "plainonly"], ["-v", "-k", "plainonly"], ["tests.test_plain"]):
            with self.subTest(args=args):
                ours = self.sample.run(*args)
                theirs = self.sample.run(*args, module="unittest")
                self.assertEqual(normalize(ours.stderr), normalize(theirs.stderr))
                self.assertEqual(ours.stdout, theirs.stdout)
                self.assertEqual(ours.returncode, theirs.returncode)
                self.assertEqual(ours.agents, [])


class LeakCheck(unittest.TestCase):
    """The check every run above ends with can fail."""

    def test_a_live_agent_of_the_run_is_a_leak(self):
        proc = subprocess.Popen([sys.executable, "-c",
                                 "import time; time.sleep(60)  # disttest.agent"])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        support.wait_for(lambda: "disttest.agent" in " ".join(psutil.Process(proc.pid)
                                                              .cmdline()))
        run = Run(["fake"], proc, "", "", [proc.pid], None, time.time())
        with self.assertRaisesRegex(AssertionError, f"node processes.*{proc.pid}"):
            Sample.check_no_leaks(run, wait=0.1)
        proc.kill()
        proc.wait()
        Sample.check_no_leaks(run, wait=0.1)  # gone: no leak

    def test_a_live_template_of_the_run_is_a_leak(self):
        # Without this test process's mark in its environment: only the spy's
        # record of templates can tell that the run made it.
        env = {k: v for k, v in os.environ.items() if k != support.OWNER_VAR}
        proc = subprocess.Popen([sys.executable, "-c",
                                 "import time; time.sleep(60)  # disttest.agent"], env=env)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        support.wait_for(lambda: "disttest.agent" in " ".join(psutil.Process(proc.pid)
                                                              .cmdline()))
        run = Run(["fake"], proc, "", "", [], None, time.time(), templates=[proc.pid])
        with self.assertRaisesRegex(AssertionError, f"node processes.*{proc.pid}"):
            Sample.check_no_leaks(run, wait=0.1)
        proc.kill()
        proc.wait()
        Sample.check_no_leaks(run, wait=0.1)

    def test_a_cluster_temp_dir_of_the_run_is_a_leak(self):
        left = Path(tempfile.mkdtemp(prefix="disttest-c999-e2e0-"))
        self.addCleanup(shutil.rmtree, left, True)
        proc = subprocess.Popen([sys.executable, "-c", ""])
        proc.wait()
        run = Run(["fake"], proc, "", "", [], None, time.time())
        run.stderr = "disttest: starting cluster c999-e2e0 (2 nodes)"
        with self.assertRaisesRegex(AssertionError, "temp dirs"):
            Sample.check_no_leaks(run, wait=0.1)


# -- clusters that cannot start, bad declarations, bad configuration ----------------
class ClusterStartFailure(unittest.TestCase):
    """startup_timeout = 1 ms: no node can report ready in time."""

    ENV = {"DISTTEST_STARTUP_TIMEOUT": "0.001", "DISTTEST_STARTUP_RETRIES": "0"}

    def setUp(self):
        self.sample = Sample(self.addCleanup, "failstart")

    def test_fallback_fail_errors_each_class_and_runs_the_rest(self):
        run = self.sample.run("-v", "--fallback", "fail", env=self.ENV, report=True)
        self.assertEqual(run.returncode, 1, run)
        self.assertEqual(run.counts(), {"run": 2, "status": "FAILED", "errors": 2})
        self.assertEqual(sorted(ids_with_status(run.stderr, "ok")),
                         ["tests.test_start.APlainBefore.test_plain_before",
                          "tests.test_start.ZPlainAfter.test_plain_after"])
        for cls in ("CannotStart", "CannotStartEither"):
            self.assertIn(f"ERROR: setUpClass (tests.test_start.{cls})", run.stderr)
        self.assertIn("did not report ready within 0.001s", run.stderr)
        self.assertIn("fix:   raise startup_timeout", run.stderr)
        self.assertNotIn("ran without a cluster", run.output)
        self.assertEqual([f["policy"] for f in run.report["fallbacks"]], ["fail", "fail"])
        self.assertEqual(run.report["cluster_starts"], 0)
        # both classes tried (another node_env: another attempt); the leak check after
        # the run found none of their nodes (killed before they could even report)
        self.assertEqual(len(re.findall(r"disttest: starting cluster c\d", run.stderr)), 2)
        self.assertNotIn("reuse saved", run.stderr)

    def test_fallback_skip_skips_with_the_diagnosis(self):
        run = self.sample.run("-v", "--fallback", "skip", env=self.ENV, report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 2, "status": "OK", "skipped": 2})
        skips = re.findall(r"skipped 'cluster could not start: node node-\d did not report "
                           r"ready within 0\.001s.*raise startup_timeout", run.stderr)
        self.assertEqual(len(skips), 2, run)
        if sys.version_info >= (3, 11):  # earlier, unittest names no class on the line
            for cls in ("CannotStart", "CannotStartEither"):
                self.assertIn(f"setUpClass (tests.test_start.{cls}) ... skipped 'cluster "
                              "could not start", run.stderr)
        self.assertEqual([f["class"] for f in run.report["fallbacks"]],
                         ["tests.test_start.CannotStart", "tests.test_start.CannotStartEither"])
        self.assertEqual(run.report["errors"], 0)
        self.assertEqual([f["policy"] for f in run.report["fallbacks"]], ["skip", "skip"])


class BadDeclaration(unittest.TestCase):

    def test_bad_cluster_size_errors_that_class_only(self):
        sample = Sample(self.addCleanup, "baddecl")
        run = sample.run("-v", report=True)
        self.assertEqual(run.returncode, 1, run)
        self.assertEqual(run.counts(), {"run": 2, "status": "FAILED", "errors": 1})
        self.assertIn("ERROR: setUpClass (tests.test_bad.BadSize)", run.stderr)
        message = re.search(r"^disttest\.errors\.ConfigError: (.*)$", run.stderr, re.M)
        self.assertIsNotNone(message, run)
        for part in ("tests.test_bad.BadSize", "cluster_size = 0",
                     "a whole number of nodes from 1 to 16"):
            self.assertIn(part, message.group(1))
        self.assertEqual(sorted(ids_with_status(run.stderr, "ok")),
                         ["tests.test_bad.GoodCluster.test_good",
                          "tests.test_bad.GoodPlain.test_plain"])
        package = re.escape(str(REPO / "disttest"))
        self.assertNotRegex(run.output, rf'File "{package}')
        self.assertNotIn("Traceback", run.output)
        self.assertEqual(run.report["cluster_starts"], 1)


class ConfigurationErrors(unittest.TestCase):
    """A bad setting stops the run before any test module is imported."""

    def setUp(self):
        self.sample = Sample(self.addCleanup, "configerror")

    def assert_config_error(self, run: Run, *parts: str) -> None:
        self.assertEqual(run.returncode, 2, run)
        self.assertEqual(run.stdout, "")
        errors = [line for line in run.stderr.splitlines() if line.startswith("disttest: ")]
        self.assertEqual(len(errors), 1, run)
        for part in parts:
            self.assertIn(part, errors[0])
        self.assertNotIn("Traceback", run.stderr)
        self.assertNotIn("Ran ", run.stderr)
        self.assertEqual(self.sample.read_lines("markers.txt"), [], "tests were imported")
        self.assertEqual(run.agents, [])

    def test_unknown_key_in_disttest_toml(self):
        for args in ([], ["discover", "-s", "tests", "-t", "."]):
            with self.subTest(args=args):
                self.assert_config_error(self.sample.run(*args), "disttest.toml",
                                         "unknown setting cluster_sise")

    def test_bad_value_in_disttest_toml(self):
        (self.sample.root / "disttest.toml").write_text("default_cluster_size = 0\n")
        self.assert_config_error(self.sample.run("-v"), "disttest.toml",
                                 "default_cluster_size = 0", "whole number")

    def test_bad_value_in_the_environment(self):
        (self.sample.root / "disttest.toml").unlink()
        run = self.sample.run(env={"DISTTEST_DEFAULT_CLUSTER_SIZE": "zero"})
        self.assert_config_error(run, "DISTTEST_DEFAULT_CLUSTER_SIZE",
                                 "default_cluster_size = 'zero'", "whole number")

    def test_a_good_configuration_runs(self):
        # The same project, fixed: proves the checks above can tell the difference.
        (self.sample.root / "disttest.toml").write_text("default_cluster_size = 2\n")
        run = self.sample.run()
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(self.sample.read_lines("markers.txt"), ["imported"])


class ClusterTestsWithUnittestFlags(unittest.TestCase):

    def test_buffer_and_failfast(self):
        sample = Sample(self.addCleanup, "clusterfail")
        run = sample.run("-b", "-f", report=True)
        self.assertEqual(run.returncode, 1, run)
        # plain first, then A: its first test fails and failfast stops the run
        self.assertEqual(run.counts(), {"run": 2, "status": "FAILED", "failures": 1}, run)
        self.assertIn("wrong node count on purpose", run.stderr)
        self.assertIn("\nStdout:\nbuffered-stdout-from-cluster-test\n", run.stdout)
        self.assertNotIn("buffered-stdout-of-a-passing-test", run.output)
        self.assertEqual([c["classes"] for c in run.report["clusters"]], [["tests.test_flags.A"]])
        self.assertEqual(run.report["clusters"][0]["failures"], 1)
        self.assertIn("reuse saved 0 cluster start(s): 1 cluster class(es) served by "
                      "1 start(s)", run.stderr)
        self.assertEqual(len(run.agents), 2)

    def test_quiet_prints_no_summary(self):
        sample = Sample(self.addCleanup, "clusterfail")
        run = sample.run("-q", "-k", "passes", report=True)
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 2, "status": "OK"})
        self.assertEqual(run.report["cluster_starts"], 1)
        self.assertNotIn("Cluster usage", run.output)
        self.assertNotIn("disttest:", run.output)


class CiSizeCapTest(unittest.TestCase):
    """max_cluster_size from a ci table caps sizes in CI (it does not reject them)."""

    def test_sizes_are_capped_in_ci_only(self):
        sample = Sample(self.addCleanup, "mixed")
        (sample.root / "disttest.toml").write_text("[ci]\nmax_cluster_size = 3\n")
        capped = sample.run("-q", "--ci", report=True)
        self.assertEqual(capped.returncode, 0, str(capped))
        self.assertEqual(max(c["size"] for c in capped.report["clusters"]), 3)
        plain = sample.run("-q", "--no-ci", report=True)
        self.assertEqual(plain.returncode, 0, str(plain))
        self.assertEqual(max(c["size"] for c in plain.report["clusters"]), 5)


if __name__ == "__main__":
    unittest.main()
