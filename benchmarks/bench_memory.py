"""Memory and time of a suite whose tests keep large objects: disttest against unittest.

Two workloads, each run as whole processes of the same interpreter, side by
side and interleaved (which side goes first alternates from round to round):

* ``heavy``: one module of 200 plain tests, each keeping a 5 MB buffer on
  ``self``. unittest frees each test when it ends (``TestSuite`` lets go of
  it), so its peak memory stays near one buffer; a runner that holds every
  test until the end of the run peaks at 200 of them.
* ``--stdlib MODULE`` (optional, e.g. ``test.test_asyncio``): a CPython test
  package, run as ``python -m {unittest,disttest} MODULE``. Its
  ``*_del_collect`` tests call the garbage collector, which walks everything
  a runner keeps alive: they show the cost in time, not only in memory.

Peak memory is each process's own maximum resident set (``os.wait4``'s
``ru_maxrss``); CPU time is its user + system time from the same call, which a
busy machine disturbs far less than wall time (both are printed). The target
is disttest ≤ 1.1× unittest on memory and time.

    python benchmarks/bench_memory.py [--rounds 5] [--stdlib test.test_asyncio --stdlib-rounds 1]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _util
from bench_runner_overhead import clean_env

TARGET = 1.1
RAN = re.compile(r"^Ran (\d+) tests? in ([0-9.]+)s$", re.M)

HEAVY_MODULE = '''\
import unittest


class Heavy(unittest.TestCase):
    pass


def _make(n):
    def test(self):
        self.payload = bytearray(5 * 1024 * 1024)
        self.payload[::4096] = b"x" * len(self.payload[::4096])  # touch every page
    test.__name__ = f"test_{n:03d}"
    return test


for _n in range(200):
    setattr(Heavy, f"test_{_n:03d}", _make(_n))
'''


def run_once(module: str, args: list[str], cwd: Path, env: dict) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS in MiB, output) of ``python -m module *args``."""
    cmd = [sys.executable, "-m", module, *args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(
        os, "waitstatus_to_exitcode") else status >> 8
    elapsed = time.perf_counter() - started
    if not RAN.search(output):
        raise SystemExit(f"{' '.join(cmd)} printed no 'Ran N tests' line "
                         f"(exit {proc.returncode}); output:\n{output[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output


def measure(name: str, args: list[str], cwd: Path, env: dict, rounds: int) -> list:
    results = {side: {"wall": [], "cpu": [], "rss": []} for side in ("unittest", "disttest")}
    outcomes = {}
    for rnd in range(rounds):
        order = ("disttest", "unittest") if rnd % 2 else ("unittest", "disttest")
        for side in order:
            wall, cpu, rss, output = run_once(side, args, cwd, env)
            results[side]["wall"].append(wall)
            results[side]["cpu"].append(cpu)
            results[side]["rss"].append(rss)
            ran = RAN.search(output)
            tail = output[ran.end():].strip().splitlines()[:1]
            outcomes[side] = f"Ran {ran.group(1)}, {tail[0] if tail else '?'}"
    if outcomes["unittest"] != outcomes["disttest"]:
        print(f"  note: outcomes differ: unittest {outcomes['unittest']!r}, "
              f"disttest {outcomes['disttest']!r}")
    u, d = results["unittest"], results["disttest"]
    rows = []
    for label, key, unit in (("peak RSS", "rss", "MiB"), ("CPU time", "cpu", "s"),
                             ("wall time", "wall", "s")):
        mu, md = _util.median(u[key]), _util.median(d[key])
        ratio = md / mu
        rows.append([f"{name}: {label}", f"{mu:.2f} {unit}", f"{md:.2f} {unit}",
                     f"{ratio:.2f}×", _util.verdict(ratio, TARGET)])
    print(f"  {name}: {outcomes['unittest']} ({rounds} round(s))")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the heavy suite")
    parser.add_argument("--stdlib", metavar="MODULE",
                        help="also run this CPython test package (e.g. test.test_asyncio)")
    parser.add_argument("--stdlib-rounds", type=int, default=1)
    args = parser.parse_args()
    package_dir = _util.setup("disttest benchmark: memory of finished tests")
    env = clean_env(package_dir.parent)
    rows = []
    with tempfile.TemporaryDirectory(prefix="disttest-bench-") as tmp:
        root = Path(tmp)
        (root / "test_heavy.py").write_text(HEAVY_MODULE, encoding="utf-8")
        rows += measure("200 tests x 5 MB", ["test_heavy"], root, env, args.rounds)
        if args.stdlib:
            rows += measure(args.stdlib, [args.stdlib], root, env, args.stdlib_rounds)
    print()
    print(_util.table(["workload", "unittest", "disttest", "ratio", "verdict"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
