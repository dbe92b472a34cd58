"""What the lifecycle tests share: sample projects run in subprocesses.

A :class:`Project` is a temporary copy of one sample with a state directory of
its own (so its registry of kept clusters never mixes with another run's),
run with CI detection and ``DISTTEST_*`` settings taken out of the
environment. :func:`assert_left_nothing` checks, from the outside, what a run
leaves: node processes (``tests.support`` marks every process started from
this test process as ours), port locks written under the run's pid and the
temporary directories of its clusters.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import psutil

from disttest.environment import CI_PROVIDERS
from tests import support

SAMPLES = Path(__file__).resolve().parent
CLUSTER_ID = re.compile(r"\b(?:w\d+-)?c\d+-[0-9a-f]{4}\b")  # w<N>-: a -j worker's


# Ports of their own: a port that a run here freed and another suite running on
# the machine locked right after would look like a lock left behind. Below the
# kernel's ephemeral ports (32768-60999 on Linux), which any outgoing
# connection may take between a port's allocation and the node's bind.
PORT_RANGE = "15000-17999"


def clean_environ(extra: dict | None = None) -> dict:
    """This environment without CI variables or disttest settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in CI_PROVIDERS and not k.startswith("DISTTEST_")
           and k not in ("NO_COLOR", "FORCE_COLOR", "PYTHONSTARTUP", "PYTHONWARNINGS")}
    env["PYTHONPATH"] = support.REPO
    env["DISTTEST_PORT_RANGE"] = PORT_RANGE
    env.update(extra or {})
    return env


class Run:
    """One finished subprocess: exit status, output, pid and its JSON report."""

    def __init__(self, args, pid: int, returncode: int, stdout: str, stderr: str,
                 started: float, report_path: Path | None = None) -> None:
        self.args = args
        self.pid = pid
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.started = started  # time.time() just before the process started
        self.report = None
        if report_path is not None and report_path.exists():
            self.report = json.loads(report_path.read_text())

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def cluster_ids(self) -> set[str]:
        ids = set(CLUSTER_ID.findall(self.output))
        if self.report:
            ids.update(c["id"] for c in self.report["clusters"])
        return ids

    def __str__(self) -> str:
        return (f"$ {' '.join(map(str, self.args))}\nexit status {self.returncode}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


class Project:
    """A temporary copy of ``samples_lifecycle/<name>``; removed after the test,
    with whatever clusters it kept stopped first."""

    def __init__(self, testcase: unittest.TestCase, name: str, env: dict | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"dtlc-{name}-"))
        self.root = self.tmp / name
        shutil.copytree(SAMPLES / name, self.root, ignore=shutil.ignore_patterns("__pycache__"))
        self.state = self.tmp / "state"
        self.markers = self.tmp / "markers.txt"
        self.extra_env = dict(env or {})
        self.runs = 0
        testcase.addCleanup(self.remove)

    # -- running ----------------------------------------------------------------
    def env(self, extra: dict | None = None) -> dict:
        return clean_environ({"DISTTEST_STATE_DIR": str(self.state),
                              "SAMPLE_MARKERS": str(self.markers),
                              **self.extra_env, **(extra or {})})

    def popen(self, *args, module: str = "disttest", env: dict | None = None,
              **kwargs) -> subprocess.Popen:
        """Start ``python -m <module> *args`` in the project (output piped)."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=self.root,
                                env=self.env(env), text=True, **kwargs)

    def run(self, *args, module: str = "disttest", env: dict | None = None,
            report: bool = False, timeout: float = 60) -> Run:
        """Run ``python -m <module> *args`` (with ``--json-report`` when ``report``)."""
        self.runs += 1
        args = list(args)
        path = None
        if report:
            path = self.tmp / f"report-{self.runs}.json"
            args += ["--json-report", str(path)]
        started = time.time()
        proc = self.popen(*args, module=module, env=env)
        return self.finish(proc, args, started, path, timeout)

    def finish(self, proc: subprocess.Popen, args, started: float,
               report_path: Path | None = None, timeout: float = 60) -> Run:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"timed out after {timeout}s: {args}\n{stdout}\n{stderr}")
        return Run(args, proc.pid, proc.returncode, stdout or "", stderr or "", started,
                   report_path)

    def cluster(self, *args, env: dict | None = None, timeout: float = 60) -> Run:
        """``python -m disttest cluster *args``."""
        return self.run("cluster", *args, env=env, timeout=timeout)

    # -- what the samples and the registry say -----------------------------------
    def marker_lines(self) -> list[str]:
        return self.markers.read_text().splitlines() if self.markers.exists() else []

    def marker(self, prefix: str) -> list[str] | None:
        """The words after ``prefix`` on the last marker line starting with it."""
        found = [line.split()[1:] for line in self.marker_lines()
                 if line.split()[:1] == [prefix]]
        return found[-1] if found else None

    def wait_marker(self, prefix: str, proc: subprocess.Popen | None = None,
                    timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            words = self.marker(prefix)
            if words is not None:
                return words
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended before writing {prefix!r}:\n{out}\n{err}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {prefix!r} marker within {timeout}s")
            time.sleep(0.02)

    def record_paths(self) -> list[Path]:
        return sorted((self.state / "clusters").glob("*.json"))

    def records(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in self.record_paths()]

    def kept_pids(self) -> list[int]:
        return [node["pid"] for record in self.records() for node in record["nodes"]]

    # -- cleaning up ---------------------------------------------------------------
    def remove(self) -> None:
        """Stop every cluster still kept in this project's registry, then delete it all."""
        from disttest.clusters import kept

        for path in self.record_paths():
            try:
                kept.stop_record(json.loads(path.read_text()), timeout=5)
            except (OSError, ValueError):
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- checks -------------------------------------------------------------------------
def alive(pids) -> list[int]:
    return [pid for pid in pids if not support.gone(pid)]


def agents_since(started: float, ignore=()) -> list[int]:
    """Live node agents of ours that started at ``started`` (time.time()) or later."""
    found = []
    for proc in support.our_processes():
        try:
            if proc.create_time() >= started - 0.5 and proc.pid not in ignore:
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found


def leftovers(run: Run, pids=(), keep=(), cluster_ids=()) -> dict[str, list]:
    """What ``run`` left: live nodes (``pids`` and any agent of ours started since
    it began, except ``keep``), port locks under its pid, and the temp dirs of
    its clusters (those its output names, and ``cluster_ids``)."""
    ids = run.cluster_ids() | set(cluster_ids)
    found = {"node processes": sorted(set(alive(pids)) | set(agents_since(run.started, keep))
                                      - set(keep)),
             "port locks": [str(p) for p in support.our_lock_files(pid=run.pid)],
             "temp dirs": [str(d) for d in support.our_temp_dirs(ids, support.run_owner(run))]}
    return {what: items for what, items in found.items() if items}


def assert_left_nothing(testcase: unittest.TestCase, run: Run, pids=(), keep=(),
                        cluster_ids=(), wait: float = 3.0) -> None:
    """Fail unless ``run`` left no node, port lock or cluster temp dir (see leftovers)."""
    def left() -> dict:
        return leftovers(run, pids, keep, cluster_ids)

    if not support.wait_for(lambda: not left(), timeout=wait):
        testcase.fail(f"left behind: {left()}\n{run}")


def lock_path(port: int) -> Path:
    from disttest.clusters.ports import default_lock_dir

    return default_lock_dir() / f"{port}.lock"


def locks_left(record: dict) -> list[str]:
    """Lock files of a kept cluster's ports still naming one of its nodes."""
    left = []
    for node in record["nodes"]:
        for port in node["ports"].values():
            try:
                if lock_path(port).read_text().strip() == str(node["pid"]):
                    left.append(f"{lock_path(port)} ({node['name']})")
            except OSError:
                pass  # removed: what should happen
    return left


def report_pids(report: dict) -> list[int]:
    """Every node pid the JSON report lists (stopped clusters list theirs)."""
    return [pid for c in report["clusters"] for node in c["nodes"] for pid in node["pids"]]
