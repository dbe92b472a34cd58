"""Cluster planning: one planned, reused and grown cluster against one cluster per class.

A synthetic suite of 20 ``DistributedTestCase`` classes is written to a
temporary directory and byte-compiled: 5 classes each of cluster size 2, 3, 4
and 5, one class per module, with the sizes interleaved in discovery order
(2, 3, 4, 5, 2, 3, ...) so the planner has to reorder. Each class has a
``setUpCluster`` that sleeps ``--fixture`` seconds (default 0.05, standing
for loading a schema or starting a service) and calls every node, and two
quick tests that call into the nodes through a top-level function of a
helper module of the suite (``this_node.name``, the class's mark in
``this_node.state``).

After one warm-up round, ``--rounds`` interleaved rounds each run, as whole
processes, alternating which goes first:

* planned  — ``python -m disttest discover -s DIR -t DIR -q --json-report planned.json``
* no-reuse — the same with ``--no-reuse`` (a fresh cluster for every class)

Environment: CI and ``DISTTEST_*`` variables removed, ``NO_COLOR=1``, the
directory holding disttest on ``PYTHONPATH``. Every run must exit 0, run the
40 tests successfully, and write its JSON report; the script prints wall
times and the report's ``cluster_starts``, ``cluster_reuses``,
``cluster_grows``, ``nodes_started`` and ``cluster_management_s``.

The checks: the planned run starts exactly one cluster (2 nodes, grown to 5:
``nodes_started`` = 5) and is faster than one cluster per class. Run from the
repository root:

    python benchmarks/bench_planning.py [--rounds 5] [--fixture 0.05]
"""
from __future__ import annotations

import argparse
import compileall
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _util
from bench_runner_overhead import clean_env, forget_durations

SIZES = (2, 3, 4, 5)
PER_SIZE = 5
TESTS_PER_CLASS = 2

NODEFUNCS = '''\
"""Functions the suite's tests run on the nodes (importable, so they travel by reference)."""
from disttest import this_node


def node_name():
    return this_node.name


def mark(value):
    this_node.state["mark"] = value


def marked():
    return this_node.state.get("mark")
'''

CLASS = '''\
import time

import disttest
import nodefuncs


class {name}(disttest.DistributedTestCase):
    cluster_size = {size}

    @classmethod
    def setUpCluster(cls):
        time.sleep({fixture!r})  # a fixture: load a schema, start a service...
        cls.cluster.call_all(nodefuncs.mark, {name!r})

    def test_node_names(self):
        self.assertEqual([node.call(nodefuncs.node_name) for node in self.nodes],
                         [node.name for node in self.nodes])

    def test_fixture_on_every_node(self):
        self.assertEqual(len(self.nodes), {size})
        self.assertEqual(self.cluster.call_all(nodefuncs.marked), [{name!r}] * {size})
'''

FIELDS = ("cluster_starts", "cluster_reuses", "cluster_grows", "nodes_started",
          "cluster_management_s")


def write_suite(root: Path, fixture: float) -> int:
    """20 modules test_cNN.py of one class each; sizes interleaved. Returns the test count."""
    (root / "nodefuncs.py").write_text(NODEFUNCS, encoding="utf-8")
    classes = len(SIZES) * PER_SIZE
    for i in range(classes):
        size = SIZES[i % len(SIZES)]
        name = f"TestSize{size}Class{i // len(SIZES)}"
        text = CLASS.format(name=name, size=size, fixture=fixture)
        (root / f"test_c{i:02d}.py").write_text(text, encoding="utf-8")
    compileall.compile_dir(str(root), quiet=1)  # as a checkout run twice would be
    return classes * TESTS_PER_CLASS


def run_once(suite: Path, env: dict, report: Path, expected: int,
             no_reuse: bool) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "disttest", "discover", "-s", str(suite), "-t", str(suite),
           "-q", "--json-report", str(report)] + (["--no-reuse"] if no_reuse else [])
    if report.exists():
        report.unlink()
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(suite.parent), env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    doc = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    if (proc.returncode != 0 or f"Ran {expected} tests" not in output
            or not doc.get("successful") or doc.get("tests_run") != expected):
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}), expected "
                         f"'Ran {expected} tests', exit 0 and a successful JSON report; "
                         f"output:\n{output}")
    return elapsed, doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--fixture", type=float, default=0.05,
                        help="seconds each setUpCluster sleeps (default 0.05)")
    args = parser.parse_args()

    package_dir = _util.setup("disttest benchmark: cluster planning and reuse")
    env = clean_env(package_dir.parent)
    sides = {"planned": False, "no-reuse": True}
    results = {side: {"wall": [], "docs": []} for side in sides}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="disttest-bench-") as tmp:
        suite = Path(tmp) / "suite"
        suite.mkdir()
        expected = write_suite(suite, args.fixture)
        print(f"suite: {len(SIZES) * PER_SIZE} DistributedTestCase classes "
              f"({PER_SIZE} each of size {', '.join(map(str, SIZES))}, interleaved), "
              f"{expected} tests, setUpCluster fixture {args.fixture:g} s, byte-compiled")
        print("env:   CI and DISTTEST_* variables removed, NO_COLOR=1, "
              f"PYTHONPATH={package_dir.parent}")
        print()
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            order = list(sides) if rnd % 2 else list(reversed(sides))
            for side in order:
                report = Path(tmp) / f"{side}.json"
                wall, doc = run_once(suite, env, report, expected, sides[side])
                if rnd:
                    results[side]["wall"].append(wall)
                    results[side]["docs"].append(doc)
        forget_durations(suite, env)
    total = time.perf_counter() - started

    def field_median(side: str, key: str) -> float:
        return _util.median([doc[key] for doc in results[side]["docs"]])

    def field_text(side: str, key: str) -> str:
        values = [doc[key] for doc in results[side]["docs"]]
        if key.endswith("_s"):
            return f"{_util.median(values):.2f} s"
        low, high = min(values), max(values)
        return str(low) if low == high else f"{_util.median(values):g} ({low}-{high})"

    def start_median(side: str) -> float:
        """Sum of the clusters' own start-up times (clusters[].startup_s)."""
        return _util.median([sum(c["startup_s"] for c in doc["clusters"])
                             for doc in results[side]["docs"]])

    p, n = results["planned"], results["no-reuse"]
    wall_p, wall_n = _util.median(p["wall"]), _util.median(n["wall"])
    rows = [["wall time (median)", f"{wall_p:.2f} s", f"{wall_n:.2f} s"],
            ["wall time (min)", f"{min(p['wall']):.2f} s", f"{min(n['wall']):.2f} s"],
            ["duration_s (report)", field_text("planned", "duration_s"),
             field_text("no-reuse", "duration_s")]]
    rows += [[key, field_text("planned", key), field_text("no-reuse", key)] for key in FIELDS]
    rows.append(["  of which starts", f"{start_median('planned'):.2f} s",
                 f"{start_median('no-reuse'):.2f} s"])
    print(f"Whole process, {expected} tests in {len(SIZES) * PER_SIZE} classes, median of "
          f"{args.rounds} interleaved rounds (+1 warm-up):")
    print(_util.table(["", "planned (reuse)", "--no-reuse"], rows))
    print()
    print(f"no-reuse / planned: {wall_n / wall_p:.2f}x the wall time; cluster management "
          f"{field_median('no-reuse', 'cluster_management_s'):.2f} s against "
          f"{field_median('planned', 'cluster_management_s'):.2f} s")
    fixture_total = len(SIZES) * PER_SIZE * args.fixture
    print("  cluster_management_s = starting, growing, resetting (between classes) and stopping")
    print(f"  (both sides also pay the fixtures: {len(SIZES) * PER_SIZE} x {args.fixture:g} s = "
          f"{fixture_total:.2f} s, and interpreter start, imports and discovery)")
    one_cluster = all(doc["cluster_starts"] == 1 and doc["nodes_started"] == max(SIZES)
                      for doc in p["docs"])
    faster = wall_p < wall_n
    print(f"planned run starts one cluster of {min(SIZES)} nodes grown to {max(SIZES)}: "
          f"{'yes' if one_cluster else 'NO'}")
    print(f"planned run faster than one cluster per class: {'yes' if faster else 'NO'}")
    print(f"benchmark ran {total:.1f} s")
    return 0 if one_cluster and faster else 1


if __name__ == "__main__":
    sys.exit(main())
