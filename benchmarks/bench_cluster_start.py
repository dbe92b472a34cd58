"""Cluster start-up: disttest against bare interpreters.

For each size N, interleaved round by round (after one warm-up round):

* disttest — time from ``pool.acquire(Requirement(N, fresh=True))`` with
  ``node_start = "spawn"`` to the
  healthy N-node cluster it returns (every node spawned, bootstrapped over
  stdin, listening, and answering an authenticated ping). Releasing the fresh
  cluster (which stops it) happens outside the timed section.
* bare — time to spawn N interpreters of the same ``sys.executable`` with
  ``-c`` that connect back over TCP to a socket this script listens on,
  until all N connections are accepted. Clean-up is outside the timed section.

The target is disttest ≤ 1.5× bare.

Then template nodes (``node_start = "template"``), interleaved the same way
for N = 3 and 8 (``--template-sizes``), every side until every node answers:

* template — a fresh cluster forked from a template with no ``preload``,
  against the same bare interpreters; target ≤ 0.5× bare;
* with a heavy preload (``HEAVY``: asyncio, email, http.server, xml.etree,
  json, decimal, and flask where installed): spawned nodes whose first call
  imports those modules (spawn+import, what a user pays today), bare
  interpreters that import them before phoning home (bare+import), and a
  cluster forked from a template that preloaded them (its first call finds
  them imported); target: template ≥ 10× faster than spawn+import;
* restart — ``node.restart()`` of one node of a 3-node cluster until it
  answers a ping, template against spawned; target ≤ 20 ms.

The templates' own start (once per configuration) is in the warm-up round
and shown apart. Run from the repository root:

    python benchmarks/bench_cluster_start.py [--rounds 20] [--sizes 1,3,5,8]
        [--template-rounds 10] [--template-sizes 3,8] [--part all|spawn|template]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import _util

TARGET = 1.5
TEMPLATE_TARGET, PRELOAD_TARGET, RESTART_TARGET_MS = 0.5, 10.0, 20.0
HEAVY_STDLIB = ("asyncio", "email", "email.message", "http.server", "xml.etree.ElementTree",
                "json", "decimal")

BARE_CHILD = ("import socket,sys;"
              "s=socket.create_connection(('127.0.0.1',int(sys.argv[1])));"
              "s.recv(1)")


class Bare:
    """N bare interpreters that phone home; the baseline for one node start."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]

    def start(self, n: int, imports: tuple = ()) -> tuple[float, list, list]:
        code = "".join(f"import {name};" for name in imports) + BARE_CHILD
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code, str(self.port)],
                                  stdin=subprocess.DEVNULL) for _ in range(n)]
        conns = [self.listener.accept()[0] for _ in range(n)]
        return time.perf_counter() - started, procs, conns

    @staticmethod
    def stop(procs, conns) -> None:
        for conn in conns:
            conn.close()  # the child's recv() returns b"" and it exits
        for proc in procs:
            proc.wait(10)

    def close(self) -> None:
        self.listener.close()


def time_disttest(pool, Requirement, n: int) -> tuple[float, dict]:
    started = time.perf_counter()
    cluster = pool.acquire(Requirement(n, fresh=True))
    elapsed = time.perf_counter() - started
    timings = dict(cluster._entry.timings)
    assert len(cluster) == n
    pool.release(cluster)  # fresh: stopped here, outside the timed section
    return elapsed, timings


def time_bare(bare: Bare, n: int, imports: tuple = ()) -> float:
    elapsed, procs, conns = bare.start(n, imports)
    bare.stop(procs, conns)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (default 20)")
    parser.add_argument("--sizes", default="1,3,5,8", help="cluster sizes (default 1,3,5,8)")
    parser.add_argument("--template-rounds", type=int, default=10,
                        help="measured rounds of the template part (default 10)")
    parser.add_argument("--template-sizes", default="3,8",
                        help="cluster sizes of the template part (default 3,8)")
    parser.add_argument("--part", choices=("all", "spawn", "template"), default="all")
    args = parser.parse_args()

    _util.setup("disttest benchmark: cluster start-up")
    if args.part in ("all", "spawn"):
        spawn_part(args)
    if args.part in ("all", "template"):
        if args.part == "all":
            print()
        import _template_part  # the template half of this benchmark

        _template_part.template_part(args, Bare, time_bare)
    return 0


def spawn_part(args) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]

    # disttest.config is written concurrently with this benchmark: wait for it.
    for attempt in range(60):
        try:
            from disttest.config import load_config
            break
        except ImportError as exc:
            if attempt == 59:
                raise
            print(f"waiting for disttest.config ({exc})", file=sys.stderr)
            time.sleep(5)
    from disttest.clusters.pool import ClusterPool
    from disttest.requirements import Requirement

    pool = ClusterPool(load_config().replace(node_start="spawn"))  # the template part is below
    bare = Bare()
    results = {n: {"disttest": [], "bare": [], "spawn_s": [], "ready_s": [], "health_s": []}
               for n in sizes}
    first_acquire = None
    started = time.perf_counter()
    try:
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            for n in sizes:
                # Alternate which side goes first, so neither always runs
                # on a machine the other has just warmed (or loaded).
                order = ("disttest", "bare") if rnd % 2 else ("bare", "disttest")
                for side in order:
                    if side == "disttest":
                        elapsed, timings = time_disttest(pool, Requirement, n)
                    else:
                        elapsed, timings = time_bare(bare, n), None
                    if rnd == 0:
                        if side == "disttest" and first_acquire is None:
                            first_acquire = (n, elapsed)
                        continue
                    results[n][side].append(elapsed)
                    if timings:
                        for part in ("spawn_s", "ready_s", "health_s"):
                            results[n][part].append(timings[part])
    finally:
        pool.shutdown()
        bare.close()
    total = time.perf_counter() - started

    ms = lambda seconds: f"{seconds * 1000:.1f}"  # noqa: E731
    rows, split_rows, worst = [], [], 0.0
    for n in sizes:
        r = results[n]
        d, b = _util.median(r["disttest"]), _util.median(r["bare"])
        worst = max(worst, d / b)
        rows.append([n, ms(d), ms(b), f"{d / b:.2f}×", ms(min(r["disttest"])), ms(min(r["bare"])),
                     "ok" if d / b <= TARGET else "over"])
        split_rows.append([n, ms(_util.median(r["spawn_s"])), ms(_util.median(r["ready_s"])),
                           ms(_util.median(r["health_s"])), ms(d)])
    print(f"Start-up of an N-node cluster, median of {args.rounds} interleaved rounds "
          f"(+1 warm-up), milliseconds:")
    print(_util.table(["N", "disttest", "bare", "ratio", "disttest min", "bare min",
                       f"≤{TARGET:g}×"], rows))
    print()
    print("disttest split (pool entry.timings, medians), milliseconds:")
    print("  spawn = create every agent process; ready = until every ready line arrived; "
          "health = authenticated ping of every node")
    print(_util.table(["N", "spawn", "ready", "health", "acquire total"], split_rows))
    print()
    print(f"first acquire of the process (warm-up, N={first_acquire[0]}, not in the medians): "
          f"{ms(first_acquire[1])} ms, including the controller's one-time lazy imports")
    print(f"worst ratio {worst:.2f}×: target {_util.verdict(worst, TARGET)}")
    print(f"benchmark ran {total:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
