"""The template half of bench_cluster_start.py (see its docstring)."""
from __future__ import annotations

import importlib.util
import time

import _util

from bench_cluster_start import HEAVY_STDLIB, PRELOAD_TARGET, RESTART_TARGET_MS, TEMPLATE_TARGET


def heavy_set() -> tuple:
    return HEAVY_STDLIB + (("flask",) if importlib.util.find_spec("flask") else ())


def time_cluster(pool, Requirement, n: int, imports: tuple = ()) -> float:
    """A fresh n-node cluster until every node answers (a call importing ``imports``)."""
    started = time.perf_counter()
    cluster = pool.acquire(Requirement(n, fresh=True))
    if imports:  # exec, a builtin: the call itself imports nothing else on the node
        cluster.call_all(exec, "import " + ", ".join(imports))
    elapsed = time.perf_counter() - started
    assert len(cluster) == n
    pool.release(cluster)  # fresh: stopped outside the timed section
    return elapsed


def time_restart(cluster) -> float:
    node = cluster.nodes[1]
    started = time.perf_counter()
    node.restart()
    node.ping()
    return time.perf_counter() - started


def template_part(args, Bare, time_bare) -> None:
    from disttest.config import load_config
    from disttest.clusters.pool import ClusterPool
    from disttest.requirements import Requirement

    sizes = [int(s) for s in args.template_sizes.split(",")]
    heavy = heavy_set()
    config = load_config()
    warnings: list[str] = []
    pools = {"spawn": ClusterPool(config.replace(node_start="spawn")),
             "template": ClusterPool(config.replace(node_start="template")),
             "preloaded": ClusterPool(config.replace(node_start="template", preload=heavy))}
    for pool in pools.values():
        pool.events.subscribe(lambda e: warnings.append(e.message)
                              if e.kind == "warning" else None)
    bare = Bare()
    sides = {
        "bare": lambda n: time_bare(bare, n),
        "template": lambda n: time_cluster(pools["template"], Requirement, n),
        "bare+import": lambda n: time_bare(bare, n, heavy),
        "spawn+import": lambda n: time_cluster(pools["spawn"], Requirement, n, heavy),
        "template+preload": lambda n: time_cluster(pools["preloaded"], Requirement, n, heavy),
    }
    results = {n: {side: [] for side in sides} for n in sizes}
    restarts = {"spawn": [], "template": []}
    warm_up: dict[str, float] = {}
    began = time.perf_counter()
    try:
        kept = {kind: pools[kind].acquire(Requirement(3)) for kind in restarts}
        for rnd in range(args.template_rounds + 1):  # round 0 is the warm-up
            for n in sizes:
                order = list(sides) if rnd % 2 else list(reversed(sides))
                for side in order:
                    elapsed = sides[side](n)
                    if rnd:
                        results[n][side].append(elapsed)
                    else:
                        warm_up.setdefault(side, elapsed)
            for kind in (("spawn", "template") if rnd % 2 else ("template", "spawn")):
                elapsed = time_restart(kept[kind])
                if rnd:
                    restarts[kind].append(elapsed)
    finally:
        for pool in pools.values():
            pool.shutdown()
        bare.close()
    total = time.perf_counter() - began

    ms = lambda seconds: f"{seconds * 1000:.1f}"  # noqa: E731
    med = {n: {side: _util.median(v) for side, v in r.items()} for n, r in results.items()}
    print("Template nodes (node_start = \"template\"): a fresh N-node cluster until every "
          f"node answers, median of {args.template_rounds} interleaved rounds (+1 warm-up), ms")
    print(f"heavy preload: {', '.join(heavy)}")
    rows, worst_plain, worst_heavy = [], 0.0, float("inf")
    for n in sizes:
        m = med[n]
        plain = m["template"] / m["bare"]
        speedup = m["spawn+import"] / m["template+preload"]
        worst_plain, worst_heavy = max(worst_plain, plain), min(worst_heavy, speedup)
        rows.append([n, ms(m["bare"]), ms(m["template"]), f"{plain:.2f}×",
                     ms(m["spawn+import"]), ms(m["bare+import"]), ms(m["template+preload"]),
                     f"{speedup:.1f}×", f"{m['bare+import'] / m['template+preload']:.1f}×"])
    print(_util.table(["N", "bare", "template", "t/bare", "spawn+import", "bare+import",
                       "template+preload", "spawn+import/t", "bare+import/t"], rows))
    restart = {kind: _util.median(v) * 1000 for kind, v in restarts.items()}
    print()
    print(f"restart() of one node of 3 until it answers a ping, median of "
          f"{args.template_rounds}: template {restart['template']:.1f} ms, "
          f"spawned {restart['spawn']:.1f} ms")
    print(f"warm-up round (includes each template's one-time start), N={sizes[0]}: "
          f"template {ms(warm_up['template'])} ms, "
          f"template+preload {ms(warm_up['template+preload'])} ms")
    if warnings:
        print("warnings:", *warnings, sep="\n  ")
    print(f"template / bare, worst {worst_plain:.2f}×: target ≤{TEMPLATE_TARGET:g}× "
          f"{_util.verdict(worst_plain, TEMPLATE_TARGET)}")
    print(f"spawn+import / template+preload, worst {worst_heavy:.1f}×: target "
          f"≥{PRELOAD_TARGET:g}× {'met' if worst_heavy >= PRELOAD_TARGET else 'NOT met'}")
    print(f"restart {restart['template']:.1f} ms: target ≤{RESTART_TARGET_MS:g} ms "
          f"{'met' if restart['template'] <= RESTART_TARGET_MS else 'NOT met'}")
    print(f"template part ran {total:.1f} s")
