"""``preload = "auto"``: a learned preload list against none and a hand-written one.

Every side is a fresh N-node cluster forked from a template (``node_start =
"template"``) until every node has answered a first call that imports the
heavy set of bench_cluster_start.py (what real code under test does on its
first call), interleaved round by round after one warm-up round:

* none — a template with no ``preload``: each node imports the set itself;
* auto — ``preload = "auto"``, with a history taught beforehand by one pool
  whose nodes ran that same call (the learned list, not the set as written);
* listed — ``preload`` set to the heavy set by hand.

Targets: auto ≥ 10× faster than none (the same bar as a hand-written heavy
preload against spawning and importing), and auto ≤ 1.25× listed (learning
costs nothing per node). The templates' own start (once per configuration
and run) is in the warm-up round and shown apart, with how many modules
each preloaded. Run from the repository root:

    python benchmarks/bench_preload_auto.py [--rounds 10] [--sizes 3,8]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import _util

AUTO_TARGET, LISTED_TARGET = 10.0, 1.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sizes", default="3,8")
    args = parser.parse_args()
    _util.setup('preload = "auto": learned, none and listed preloads')
    from _template_part import heavy_set, time_cluster

    from disttest.clusters.pool import ClusterPool
    from disttest.config import load_config
    from disttest.requirements import Requirement

    sizes = [int(s) for s in args.sizes.split(",")]
    heavy = heavy_set()
    with tempfile.TemporaryDirectory(prefix="bench-preload-auto-") as tmp:
        history = Path(tmp, "history.json")
        config = load_config().replace(node_start="template", durations_file=str(history))
        teacher = ClusterPool(config.replace(preload=("auto",)))
        try:
            time_cluster(teacher, Requirement, 1, heavy)
        finally:
            teacher.shutdown()
        [entry] = json.loads(history.read_text())["preload"].values()
        started: dict[str, int] = {}
        warnings: list[str] = []
        pools = {"none": ClusterPool(config),
                 "auto": ClusterPool(config.replace(preload=("auto",))),
                 "listed": ClusterPool(config.replace(preload=heavy))}
        for side, pool in pools.items():
            pool.events.subscribe(lambda e, side=side: started.setdefault(side, e.modules)
                                  if e.kind == "template_started" else None)
            pool.events.subscribe(lambda e: warnings.append(e.message)
                                  if e.kind == "warning" else None)
        results = {n: {side: [] for side in pools} for n in sizes}
        warm_up: dict[str, float] = {}
        began = time.perf_counter()
        try:
            for rnd in range(args.rounds + 1):  # round 0 is the warm-up
                for n in sizes:
                    order = list(pools) if rnd % 2 else list(reversed(pools))
                    for side in order:
                        elapsed = time_cluster(pools[side], Requirement, n, heavy)
                        if rnd:
                            results[n][side].append(elapsed)
                        else:
                            warm_up.setdefault(side, elapsed)
        finally:
            for pool in pools.values():
                pool.shutdown()
    total = time.perf_counter() - began

    ms = lambda seconds: f"{seconds * 1000:.1f}"  # noqa: E731
    print(f"heavy set (the first call imports it): {', '.join(heavy)}")
    print(f"learned by one teaching run: {len(entry['modules'])} module(s), "
          f"{len(entry.get('refused', {}))} refused")
    print(f"a fresh N-node template cluster until every node answered that call, median of "
          f"{args.rounds} interleaved rounds (+1 warm-up), ms")
    rows, worst_auto, worst_listed = [], float("inf"), 0.0
    for n in sizes:
        m = {side: _util.median(v) for side, v in results[n].items()}
        speedup, versus = m["none"] / m["auto"], m["auto"] / m["listed"]
        worst_auto, worst_listed = min(worst_auto, speedup), max(worst_listed, versus)
        rows.append([n, ms(m["none"]), ms(m["auto"]), ms(m["listed"]), f"{speedup:.1f}×",
                     f"{versus:.2f}×"])
    print(_util.table(["N", "none", "auto", "listed", "none/auto", "auto/listed"], rows))
    print()
    print(f"warm-up round (includes each template's one-time start), N={sizes[0]}: "
          + ", ".join(f"{side} {ms(warm_up[side])} ms ({started.get(side, '?')} module(s) "
                      "preloaded)" for side in pools))
    if warnings:
        print("warnings:", *warnings, sep="\n  ")
    print(f"none / auto, worst {worst_auto:.1f}×: target ≥{AUTO_TARGET:g}× "
          f"{'met' if worst_auto >= AUTO_TARGET else 'NOT met'}")
    print(f"auto / listed, worst {worst_listed:.2f}×: {_util.verdict(worst_listed, LISTED_TARGET)}")
    print(f"ran {total:.1f} s")


if __name__ == "__main__":
    main()
