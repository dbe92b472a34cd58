"""Coverage of node code: a run measured by coverage.py measures its nodes too.

The sample project ``tests/samples/coverage`` calls code on nodes that the
test process itself never runs, and kills, terminates, pauses and restarts
the nodes that ran it; every such line must be reported covered.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

from tests import support
from tests.test_runner_e2e import Sample

HAVE_COVERAGE = importlib.util.find_spec("coverage") is not None
HAVE_PATCH_SUBPROCESS = HAVE_COVERAGE and tuple(map(int, re.match(
    r"(\d+)\.(\d+)", importlib.metadata.version("coverage")).groups())) >= (7, 10)

# When this suite itself runs under coverage, the sample runs must not
# inherit its measurement (coverage's subprocess patch would start coverage in
# them twice) nor its data file and configuration.
_OUTER_COVERAGE_VARS = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG", "COVERAGE_FILE",
                        "COVERAGE_RCFILE")
_saved: dict = {}


def hide_outer_coverage() -> None:
    for name in _OUTER_COVERAGE_VARS:
        if name in os.environ:
            _saved[name] = os.environ.pop(name)


def restore_outer_coverage() -> None:
    os.environ.update(_saved)
    _saved.clear()


def setUpModule():
    hide_outer_coverage()


def tearDownModule():
    restore_outer_coverage()
    support.shutdown_and_check()


def marked_lines(path: Path, mark: str) -> set[int]:
    return {n for n, line in enumerate(path.read_text().splitlines(), 1) if mark in line}


@unittest.skipUnless(HAVE_COVERAGE, "coverage is not installed")
class MeasuredRunTests(unittest.TestCase):

    def setUp(self):
        self.sample = Sample(self.addCleanup, "coverage")

    def coverage(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "coverage", *args], cwd=self.sample.root,
                              env=self.sample.env(), capture_output=True, text=True, timeout=60)

    def executed(self) -> tuple[set[int], set[int]]:
        result = self.coverage("json", "-o", "cov.json")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        data = json.loads((self.sample.root / "cov.json").read_text())["files"]["store.py"]
        return set(data["executed_lines"]), set(data["missing_lines"])

    def assertNodeLinesCovered(self):
        store = self.sample.root / "store.py"
        executed, missing = self.executed()
        on_nodes = marked_lines(store, "# node:")
        self.assertEqual(len(on_nodes), 8)
        self.assertEqual(on_nodes - executed, set(), "lines run on nodes reported missing")
        self.assertEqual(missing, marked_lines(store, "# nowhere"))

    def leftover_data_files(self) -> list[str]:
        return sorted(p.name for p in self.sample.root.glob(".coverage.*"))

    def run_measured(self, *coverage_args, env: dict | None = None) -> None:
        run = self.sample.run("run", *coverage_args, "-m", "disttest", "discover", "-s", ".",
                              "-t", ".", module="coverage", env=env)
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("5 passed", run.stderr)
        self.assertEqual(len(run.agents), 2 + 3, "two nodes, three restarts")
        return run

    def test_coverage_run_reports_lines_run_only_on_nodes(self):
        run = self.run_measured()
        self.assertEqual(len(run.templates), 1, "the nodes were forked (the default)")
        # The controller merged its nodes' data files into its own as it
        # stopped their cluster: no combine step, nothing left over.
        self.assertEqual(self.leftover_data_files(), [])
        self.assertNodeLinesCovered()

    def test_spawned_nodes_are_measured_too(self):
        run = self.run_measured(env={"DISTTEST_NODE_START": "spawn"})
        self.assertEqual(run.templates, [])
        self.assertEqual(self.leftover_data_files(), [])
        self.assertNodeLinesCovered()

    @unittest.skipUnless(HAVE_PATCH_SUBPROCESS, "coverage's patch = subprocess needs coverage 7.10")
    def test_a_template_measured_from_its_start_forks_measured_nodes(self):
        # coverage.py starts in every new interpreter, the template included, and
        # each node forked from it must still write data of its own.
        with open(self.sample.root / ".coveragerc", "a") as rc:
            rc.write("patch = subprocess\n")
        run = self.run_measured()
        self.assertEqual(len(run.templates), 1)
        result = self.coverage("combine")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertNodeLinesCovered()

    def test_parallel_mode_data_files_are_merged_by_coverage_combine(self):
        self.run_measured("--parallel-mode")
        self.assertEqual(len(self.leftover_data_files()), 1, "the run's own parallel file")
        result = self.coverage("combine")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertNodeLinesCovered()

    def test_the_configuration_is_the_run_s(self):
        # Branch coverage asked for on the command line reaches the nodes:
        # the branch inside store.spawned_forever's loop runs only there.
        self.run_measured("--branch")
        result = self.coverage("json", "-o", "cov.json")
        self.assertEqual(result.returncode, 0, result.stderr)
        data = json.loads((self.sample.root / "cov.json").read_text())["files"]["store.py"]
        loop = min(marked_lines(self.sample.root / "store.py", "# node: loop"))
        self.assertIn([loop, loop + 1], data["executed_branches"])


@unittest.skipUnless(HAVE_COVERAGE, "coverage is not installed")
class UnmeasuredRunTests(unittest.TestCase):

    def test_an_unmeasured_run_s_nodes_never_load_coverage(self):
        code = textwrap.dedent("""
            import sys
            import disttest
            from tests.fixtures import nodefuncs as nf
            with disttest.cluster(1) as cluster:
                loaded = cluster[0].call(nf.loaded_modules)
            print("coverage" in loaded, "disttest.coverage_node" in loaded,
                  "coverage" in sys.modules)
            """)
        result = support.run_python(code)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.split(), ["False", "False", "False"])


_SSH_CLUSTER = textwrap.dedent("""
    from disttest.errors import DisttestError
    from disttest.requirements import Requirement
    from tests import support

    pool = support.make_pool(launcher="ssh", hosts=("127.0.0.1:1",), fallback="fail",
                             startup_retries=0, startup_timeout=5,
                             ssh_options=("-o", "ConnectTimeout=2", "-o", "BatchMode=yes"))
    warnings = []
    pool.events.subscribe(lambda e: e.kind == "warning" and warnings.append(e.data["message"]))
    try:
        pool.acquire(Requirement(1))
    except DisttestError:
        pass
    finally:
        pool.shutdown()
    print("\\n".join(warnings))
    """)


@unittest.skipUnless(HAVE_COVERAGE, "coverage is not installed")
class RemoteNodesTests(unittest.TestCase):

    def run_script(self, *coverage_run):
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp, "ssh_cluster.py")
            script.write_text(_SSH_CLUSTER)
            args = ([*coverage_run, "--data-file", str(Path(tmp, ".coverage")), str(script)]
                    if coverage_run else [str(script)])
            result = support.run_python(args)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_nodes_on_ssh_hosts_say_they_are_not_measured(self):
        self.assertIn("nodes on SSH hosts are not measured by coverage",
                      self.run_script("-m", "coverage", "run"))

    def test_no_such_warning_when_the_run_is_not_measured(self):
        self.assertNotIn("coverage", self.run_script())


_SIGTERMED = textwrap.dedent("""
    import json, sys, time
    import disttest
    import store
    cluster = disttest.start_cluster(2)
    cluster[0].call(store.on_node, 1)
    print(json.dumps({"pids": [n.pid for n in cluster], "id": cluster.id}), flush=True)
    time.sleep(60)
    """)


@unittest.skipUnless(HAVE_COVERAGE, "coverage is not installed")
class SigtermUnderCoverageTests(unittest.TestCase):
    """coverage.py's own SIGTERM handler (``sigterm = true``) saves and ends the
    process; disttest's still stops the clusters first."""

    def test_sigterm_stops_the_clusters_saves_the_data_and_cleans_up(self):
        sample = Sample(self.addCleanup, "coverage")
        with open(sample.root / ".coveragerc", "a") as rc:
            rc.write("sigterm = true\n")
        (sample.root / "controller.py").write_text(_SIGTERMED)
        proc, args, meta = sample.start("run", "controller.py", module="coverage")
        self.addCleanup(proc.kill)
        started = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(30), -signal.SIGTERM)
        proc.stdout.close()
        proc.stderr.close()
        support.assert_no_leaks(self, pid=proc.pid, cluster_ids=[started["id"]])
        for pid in started["pids"]:
            self.assertTrue(support.gone(pid))
        self.assertEqual(sorted(p.name for p in sample.root.glob(".coverage.*")), [])
        result = subprocess.run([sys.executable, "-m", "coverage", "json", "-o", "cov.json"],
                                cwd=sample.root, capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        data = json.loads((sample.root / "cov.json").read_text())["files"]["store.py"]
        store = sample.root / "store.py"
        called = {n for n in marked_lines(store, "# node: called")}
        self.assertEqual(called - set(data["executed_lines"]), set())


if __name__ == "__main__":
    unittest.main()
