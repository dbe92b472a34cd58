"""network = "userns" and "auto": netns-quality faults for an ordinary user.

Every run here is ``python -m disttest`` (or a script) as an ordinary user, also
when the suite runs as root (tests/unprivileged.py), on the sample project
``tests/samples/addressed``: a Raft-style election and a client-server store
whose nodes know each other by address. After each run no process of it is
left (a node, the namespace hub, a process a test started inside a node's
namespace): the namespaces and their links end with their last process.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import psutil

from tests import unprivileged

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = HERE / "samples" / "addressed"
WHY_NOT = unprivileged.userns_refusal()

BLOCKING = '''
import os, subprocess, time
from pathlib import Path
import disttest


def start_sleeper():
    return subprocess.Popen(["sleep", "300"], start_new_session=True).pid


class Blocks(disttest.DistributedTestCase):
    cluster_size = 2
    network = "userns"

    def test_blocks(self):
        pid = self.nodes[0].call(start_sleeper)
        Path(os.environ["SAMPLE_MARKER"]).write_text(str(pid))
        time.sleep(300)
'''

RAISES = '''
import json, sys
import disttest
with disttest.cluster(2, network="userns") as c:
    print(json.dumps(c.info()), flush=True)
    raise RuntimeError("the test's own mistake")
'''


class Project:
    """A copy of the sample in a temporary directory the ordinary user owns."""

    def __init__(self, testcase: unittest.TestCase, extra: dict[str, str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="disttest-userns-test-"))
        testcase.addCleanup(shutil.rmtree, self.tmp, True)
        self.dir = self.tmp / "project"
        shutil.copytree(SAMPLE, self.dir)
        for name, text in (extra or {}).items():
            (self.dir / name).write_text(text)
        for sub in ("state", "home", "tmp"):
            (self.tmp / sub).mkdir()
        unprivileged.own_dir(self.tmp)
        testcase.addCleanup(self.assert_nothing_left, testcase)

    def environ(self, extra: dict | None = None) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DISTTEST_", "SAMPLE_")) and k not in ("NO_COLOR",)}
        # TMPDIR: the clusters' directories, where nodes work, are the project's too.
        env.update(PYTHONPATH=str(REPO), HOME=str(self.tmp / "home"), DISTTEST_CI="0",
                   DISTTEST_STATE_DIR=str(self.tmp / "state"), DISTTEST_FALLBACK="fail",
                   TMPDIR=str(self.tmp / "tmp"))
        env.update(extra or {})
        return env

    def popen(self, args: list[str], env: dict | None = None, prefix: list[str] = ()):
        argv, more = unprivileged.command([*prefix, sys.executable, *args], self.tmp)
        return subprocess.Popen(argv, cwd=self.dir, env={**self.environ(env), **more},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, args: list[str], env: dict | None = None, prefix: list[str] = (),
            timeout: float = 240) -> subprocess.CompletedProcess:
        process = self.popen(args, env, prefix)
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def processes(self) -> list[psutil.Process]:
        """Processes working in the project: runners, the hub, nodes (in their
        directories under the project's TMPDIR), what they started."""
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.cwd().startswith(str(self.tmp)):
                    found.append(proc)
            except (psutil.Error, OSError):
                pass
        return found

    def assert_nothing_left(self, testcase: unittest.TestCase, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [f"{p.pid} {' '.join(p.cmdline())[:100]}" for p in self.processes()
                if p.is_running()]
        testcase.assertEqual(left, [], "processes of the run are left")


def net_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


@unittest.skipIf(WHY_NOT, f"unprivileged network namespaces cannot work here: {WHY_NOT}")
class UnprivilegedRunTests(unittest.TestCase):

    def test_auto_gives_an_ordinary_user_namespaces_where_address_based_systems_work(self):
        project = Project(self)
        done = project.run(["-m", "disttest", "-v", "--json-report", "report.json"])
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("Ran 8 tests", done.stderr)
        self.assertRegex(done.stderr, r"network userns \(auto: not root \(uid \d+\); "
                                      r"unprivileged user namespaces work here\)")
        self.assertIn("network userns", done.stderr.split("Cluster usage")[1])
        report = json.loads((project.dir / "report.json").read_text())
        self.assertEqual({c["network"] for c in report["clusters"]}, {"userns"})
        self.assertTrue(all(c["network_reason"].startswith("auto: not root")
                            for c in report["clusters"]))

    def test_the_network_level_tests_pass_as_an_ordinary_user(self):
        project = Project(self)
        argv, more = unprivileged.command(
            [sys.executable, "-m", "unittest", "-v", "tests.test_userns_network"], project.tmp)
        done = subprocess.run(argv, cwd=REPO, env={**project.environ(), **more},
                              capture_output=True, text=True, timeout=600)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertRegex(done.stderr, r"Ran (1[5-9]|[2-9]\d) tests")
        self.assertNotIn("skipped", done.stderr)
        self.assertRegex(done.stderr, r"\nOK\n")

    def test_a_killed_runner_leaves_no_namespace_and_no_process(self):
        project = Project(self, {"test_blocking.py": BLOCKING})
        marker = project.tmp / "home" / "marker"
        runner = project.popen(["-m", "disttest", "discover", "-p", "test_blocking.py"],
                               {"SAMPLE_MARKER": str(marker)})
        self.addCleanup(runner.communicate)
        deadline = time.monotonic() + 60
        while not marker.exists() and runner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(marker.exists(), runner.stderr.read() if runner.poll() else "no marker")
        sleeper = int(marker.read_text())
        run = project.processes()
        namespaces = {net_namespace(p.pid) for p in run} - {net_namespace(runner.pid), None}
        self.assertGreaterEqual(len(namespaces), 3, "the hub's and the nodes' namespaces")
        self.assertIn(sleeper, [p.pid for p in run])
        self.assertNotEqual(net_namespace(sleeper), net_namespace(runner.pid))
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        project.assert_nothing_left(self)
        held = {net_namespace(p.pid) for p in psutil.process_iter()}
        self.assertEqual(namespaces & held, set(), "a namespace of the run still has a process")

    def test_an_exception_in_the_test_leaves_nothing(self):
        project = Project(self)
        done = project.run(["-c", RAISES])
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("RuntimeError: the test's own mistake", done.stderr)
        info = json.loads(done.stdout.splitlines()[0])
        self.assertEqual(info["network"], "userns")
        project.assert_nothing_left(self)
        for node in info["nodes"]:
            self.assertFalse(psutil.pid_exists(node["pid"]) and
                             psutil.Process(node["pid"]).status() != psutil.STATUS_ZOMBIE)


@unittest.skipIf(WHY_NOT, f"unprivileged network namespaces cannot work here: {WHY_NOT}")
class KernelRefusalTests(unittest.TestCase):
    """A kernel that allows no user namespace (here: user.max_user_namespaces = 0 in a
    user namespace of the test's own, the sysctl some distributions set)."""

    REFUSING = ["unshare", "--user", "--map-root-user", "sh", "-c",
                'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"]

    def test_declared_userns_is_refused_with_the_reason(self):
        project = Project(self)
        done = project.run(["-m", "disttest", "-k", "test_the_test_process_reaches"],
                           {"SAMPLE_NETWORK": "userns"}, prefix=self.REFUSING)
        self.assertNotEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("network = 'userns' cannot be used on this machine", done.stderr)
        self.assertIn("this kernel refuses unprivileged user namespaces", done.stderr)
        self.assertNotIn("Traceback", done.stderr)

    def test_auto_falls_back_to_the_proxy_and_says_why(self):
        project = Project(self)
        done = project.run(["-m", "disttest", "-v", "-k", "test_the_test_process_reaches"],
                           prefix=self.REFUSING)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        summary = done.stderr.split("Cluster usage")[1]
        self.assertIn("network proxy", summary)
        self.assertRegex(summary, r"network of c\d+-\w+: proxy \(.*this kernel refuses "
                                  r"unprivileged user namespaces")


@unittest.skipUnless(os.geteuid() == 0, "auto picks netns only as root")
class RootTests(unittest.TestCase):

    def test_as_root_auto_picks_the_machines_namespaces(self):
        from disttest.clusters import netns_host

        if netns_host.unavailable():
            self.skipTest(f"netns cannot work here: {netns_host.unavailable()}")
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp, "project")
            shutil.copytree(SAMPLE, project)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DISTTEST_")}
            env.update(PYTHONPATH=str(REPO), DISTTEST_STATE_DIR=tmp, DISTTEST_CI="0",
                       DISTTEST_FALLBACK="fail")
            done = subprocess.run([sys.executable, "-m", "disttest", "-v"], cwd=project,
                                  env=env, capture_output=True, text=True, timeout=240)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("network netns (auto: running as root", done.stderr)


if __name__ == "__main__":
    unittest.main()
