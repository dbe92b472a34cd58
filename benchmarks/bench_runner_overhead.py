"""Runner overhead: ``python -m disttest`` against ``python -m unittest`` on a plain suite.

A synthetic suite of plain ``unittest`` tests (default 100 modules of one class
with 20 trivial tests each: 2,000 tests) is written to a temporary directory
and byte-compiled. Then, after one warm-up round, ``--rounds`` interleaved
rounds each run, as whole processes of the same interpreter:

* unittest — ``python -m unittest discover -s DIR -t DIR -q``
* disttest — ``python -m disttest discover -s DIR -t DIR -q``

Which side goes first alternates from round to round. Both run in the same
environment: CI variables and ``DISTTEST_*`` removed, ``NO_COLOR=1``, the
directory holding disttest on ``PYTHONPATH`` (both sides get it), and the
temporary directory as working directory. Each run must exit 0 and print
"Ran 2000 tests".

The target is disttest ≤ 1.05× unittest (median wall time). Run from the
repository root:

    python benchmarks/bench_runner_overhead.py [--rounds 20] [--modules 100] [--tests 20]
"""
from __future__ import annotations

import argparse
import compileall
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _util

TARGET = 1.05

# The CI variables disttest.environment knows, in case it cannot be imported.
CI_VARIABLES = ("GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "HUDSON_URL", "BUILDKITE",
                "CIRCLECI", "TRAVIS", "TF_BUILD", "TEAMCITY_VERSION", "BITBUCKET_BUILD_NUMBER",
                "APPVEYOR", "DRONE", "CODEBUILD_BUILD_ID", "CIRRUS_CI", "SEMAPHORE",
                "BITRISE_IO", "HEROKU_TEST_RUN_ID", "CI")

RAN = re.compile(r"^Ran (\d+) tests? in ([0-9.]+)s$", re.M)


def write_suite(root: Path, modules: int, tests: int) -> None:
    """``modules`` files test_mNNN.py, each one TestCase class of ``tests`` trivial tests."""
    for m in range(modules):
        lines = ["import unittest", "", "", f"class TestModule{m:03d}(unittest.TestCase):"]
        for t in range(tests):
            lines += [f"    def test_{t:02d}(self):",
                      f"        self.assertEqual({t} + 1, {t + 1})", ""]
        (root / f"test_m{m:03d}.py").write_text("\n".join(lines), encoding="utf-8")
    # Byte-compile, as a checkout run twice would be; both sides load the same .pyc.
    compileall.compile_dir(str(root), quiet=1)


def clean_env(package_parent: Path) -> dict[str, str]:
    try:
        from disttest.environment import CI_PROVIDERS
        ci_variables = set(CI_PROVIDERS) | set(CI_VARIABLES)
    except ImportError:
        ci_variables = set(CI_VARIABLES)
    env = {k: v for k, v in os.environ.items()
           if k not in ci_variables and not k.startswith("DISTTEST_")}
    env["NO_COLOR"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package_parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def forget_durations(suite: Path, env: dict) -> None:
    """Remove the class-durations file disttest recorded for this temporary project.

    disttest keeps one per project root in its state directory (for ``--shard``);
    a benchmark suite lives in a temporary directory, so its file would only be
    left behind. Best effort: nothing happens when disttest has no such file.
    """
    try:
        from disttest.config import load_config
        from disttest.durations import durations_path

        durations_path(load_config(start_dir=str(suite), environ=env)).unlink(missing_ok=True)
    except Exception:  # an older or newer disttest without it
        pass


def run_once(module: str, suite: Path, env: dict, expected: int) -> tuple[float, float]:
    """(wall seconds of the whole process, the 'Ran N tests in X s' figure)."""
    cmd = [sys.executable, "-m", module, "discover", "-s", str(suite), "-t", str(suite), "-q"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(suite.parent), env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    match = RAN.search(output)
    if proc.returncode != 0 or not match or int(match.group(1)) != expected:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}), expected "
                         f"'Ran {expected} tests' and exit 0; output:\n{output}")
    return elapsed, float(match.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (default 20)")
    parser.add_argument("--modules", type=int, default=100, help="test modules (default 100)")
    parser.add_argument("--tests", type=int, default=20, help="tests per module (default 20)")
    args = parser.parse_args()
    expected = args.modules * args.tests

    package_dir = _util.setup("disttest benchmark: runner overhead on a plain unittest suite")
    env = clean_env(package_dir.parent)
    sides = {"unittest": "unittest", "disttest": "disttest"}
    results = {side: {"wall": [], "ran": []} for side in sides}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="disttest-bench-") as tmp:
        suite = Path(tmp) / "suite"
        suite.mkdir()
        write_suite(suite, args.modules, args.tests)
        print(f"suite: {args.modules} modules x {args.tests} tests = {expected} plain tests, "
              f"byte-compiled, in {suite}")
        print(f"env:   CI and DISTTEST_* variables removed, NO_COLOR=1, "
              f"PYTHONPATH={package_dir.parent} (both sides)")
        print()
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            order = ("disttest", "unittest") if rnd % 2 else ("unittest", "disttest")
            for side in order:
                wall, ran = run_once(sides[side], suite, env, expected)
                if rnd:
                    results[side]["wall"].append(wall)
                    results[side]["ran"].append(ran)
        forget_durations(suite, env)
    total = time.perf_counter() - started

    ms = lambda seconds: f"{seconds * 1000:.1f}"  # noqa: E731
    u, d = results["unittest"], results["disttest"]
    ratio = _util.median(d["wall"]) / _util.median(u["wall"])
    rows = []
    for side, r in (("unittest", u), ("disttest", d)):
        rows.append([f"python -m {side}", ms(_util.median(r["wall"])), ms(min(r["wall"])),
                     ms(max(r["wall"])), ms(_util.median(r["ran"]))])
    print(f"Whole process, {expected} plain tests, median of {args.rounds} interleaved rounds "
          f"(+1 warm-up), milliseconds:")
    print(_util.table(["command", "median", "min", "max", "'Ran ... in' (median)"], rows))
    print()
    print("  'Ran ... in' is the test run itself as the runner reports it; the rest of the")
    print("  wall time is interpreter start, imports, argument parsing and discovery.")
    print(f"  difference of medians: {ms(_util.median(d['wall']) - _util.median(u['wall']))} ms, "
          f"of which the test run: {ms(_util.median(d['ran']) - _util.median(u['ran']))} ms")
    print(f"  ratio of the best runs {min(d['wall']) / min(u['wall']):.2f}x")
    print()
    print(f"ratio disttest/unittest (medians) {ratio:.2f}x: target {_util.verdict(ratio, TARGET)}")
    print(f"benchmark ran {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
