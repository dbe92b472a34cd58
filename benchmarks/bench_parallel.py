"""Parallel runs: wall time of ``python -m disttest -j N`` against ``-j 1``.

Suites (``--suites``, default ``synthetic,example``; ``project`` takes minutes
per run):

* synthetic -- written to a temporary directory: 16 cluster classes with 4
  requirements (sizes 1, 2, 3 and 4 of one kind, so one run in one process
  starts one cluster and grows it), each with ``--tests`` tests that sleep
  ``--sleep`` seconds, as distributed tests mostly wait;
* example -- the kvstore suite in ``examples/``;
* project -- disttest's own suite (``tests/``).

After one warm-up round (which also records the durations history that
``-j`` hands items out by), ``--rounds`` rounds each run every suite at every
``--jobs`` value, the order of the job counts rotating from round to round.
Every run is a whole process with CI variables and ``DISTTEST_*`` removed and
a durations history of its own per suite (``--durations-file``; every run
records into it), and must exit 0. Printed: the median
wall time, its ratio to ``-j 1``, and the cluster starts of the last round.

Targets on a 2-core machine: synthetic ``-j 4`` <= 0.3x its ``-j 1`` time
with at most 3 more cluster starts; the project suite at ``-j auto`` <= 0.6x.

    python benchmarks/bench_parallel.py [--suites synthetic,example,project]
        [--jobs 1,2,4] [--rounds 3] [--tests 4] [--sleep 0.25]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _util



def write_synthetic(root: Path, tests: int, sleep: float) -> None:
    """16 classes, sizes 1-4 four times over, in four modules."""
    (root / "synth").mkdir()
    (root / "synth" / "__init__.py").write_text("")
    for module in range(4):
        lines = ["import time", "", "import disttest", ""]
        for size in range(1, 5):
            lines += ["", f"class Size{size}Group{module}(disttest.DistributedTestCase):",
                      f"    cluster_size = {size}", ""]
            for number in range(tests):
                lines += [f"    def test_{number}(self):",
                          f"        time.sleep({sleep})", ""]
        (root / "synth" / f"test_group{module}.py").write_text("\n".join(lines) + "\n")


def environment() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DISTTEST_") and k not in _CI}
    env["PYTHONPATH"] = str(_util.REPO_ROOT)
    env["NO_COLOR"] = "1"
    return env


_CI = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "CIRCLECI",
       "TRAVIS", "TF_BUILD", "TEAMCITY_VERSION")


def run_once(args: list[str], cwd: Path, env: dict, report: Path,
             allow_failures: bool) -> tuple[float, int, int]:
    """(wall seconds, cluster starts, tests run) of one whole run."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "disttest", *args, "--json-report", str(report)],
                          cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    data = json.loads(report.read_text()) if report.exists() else None
    if proc.returncode != 0:
        failed = [f"{t['outcome']}: {t['id']}" for t in (data or {}).get("tests", [])
                  if t["outcome"] in ("failed", "error")]
        if not allow_failures or data is None:
            raise SystemExit(f"run failed ({proc.returncode}): {args} in {cwd}\n"
                             f"{proc.stderr[-4000:]}")
        print(f"    exit status {proc.returncode} (--allow-failures): " + "; ".join(failed))
    report.unlink()
    return wall, data["cluster_starts"], data["tests_run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="synthetic,example")
    parser.add_argument("--jobs", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tests", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=0.25)
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--allow-failures", action="store_true",
                        help="time runs that fail too (their failures are printed)")
    parser.add_argument("--history-dir", metavar="DIR",
                        help="keep each suite's durations history here (default: a temporary "
                             "directory), e.g. one seeded by an earlier -j run")
    options = parser.parse_args()
    _util.setup("disttest -j N against -j 1")
    tmp = Path(tempfile.mkdtemp(prefix="disttest-bench-parallel-"))
    try:
        synth = tmp / "synthetic"
        synth.mkdir()
        write_synthetic(synth, options.tests, options.sleep)
        suites = {
            "synthetic": (synth, ["discover", "-s", "synth", "-t", "."]),
            "example": (_util.REPO_ROOT / "examples", ["discover", "-s", ".", "-t", "."]),
            "project": (_util.REPO_ROOT, ["discover", "-s", "tests", "-t", "."]),
        }
        chosen = options.suites.split(",")
        jobs = options.jobs.split(",")
        times: dict = {}
        starts: dict = {}
        ran: dict = {}
        rounds = options.rounds + (0 if options.no_warmup else 1)
        for round_number in range(rounds):
            warmup = round_number == 0 and not options.no_warmup
            shift = round_number % len(jobs)
            order = jobs[shift:] + jobs[:shift]
            for suite in chosen:
                cwd, args = suites[suite]
                history = Path(options.history_dir or tmp) / f"durations-{suite}.json"
                for j in order:
                    wall, started, count = run_once(
                        [*args, "-q", "-j", j, "--durations-file", str(history)], cwd,
                        environment(), tmp / "report.json", options.allow_failures)
                    print(f"  {'warm-up' if warmup else f'round {round_number}'}: {suite} "
                          f"-j {j}: {wall:.2f}s, {started} cluster start(s), {count} tests",
                          flush=True)
                    if not warmup:
                        times.setdefault((suite, j), []).append(wall)
                        starts[(suite, j)] = started
                        ran[(suite, j)] = count
        rows = []
        for suite in chosen:
            base = _util.median(times[(suite, jobs[0])])
            for j in jobs:
                value = _util.median(times[(suite, j)])
                rows.append([suite, f"-j {j}", f"{value:.2f}s", f"{value / base:.2f}x",
                             str(starts[(suite, j)]),
                             f"{starts[(suite, j)] - starts[(suite, jobs[0])]:+d}",
                             str(ran[(suite, j)])])
        print()
        print(_util.table(["suite", "jobs", "median wall", f"vs -j {jobs[0]}",
                           "cluster starts", "extra", "tests"], rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
