"""Sharding a plan across CI jobs: ``--shard K/N``.

The unit of assignment is a *chain*: every plan group served by one planned
cluster, so a shard never starts a cluster that another shard also starts for
the same classes; plain units (a class, or a module with fixtures) are
assigned one by one. Weights come from the durations recorded by an earlier
whole run (class run times plus cluster start-up), or from test counts when
there is no history for every item. Sharded runs never write the history:
every shard of a selection must see the same one. Assignment is greedy, heaviest first, ties
broken by name, so the same selection and history always give the same
shards, and the union of the N shards is exactly the selection.
"""
from __future__ import annotations

from disttest.errors import ConfigError
from disttest.planner import Plan


def parse_shard(text: str) -> tuple[int, int]:
    """ "2/4" -> (2, 4); the error says what is allowed."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ConfigError.bad_value("command line --shard", "shard", text,
                                    'K/N with whole numbers, e.g. "2/4"') from None
    if n < 1 or not 1 <= k <= n:
        raise ConfigError.bad_value("command line --shard", "shard", text,
                                    "K/N with 1 <= K <= N")
    return k, n


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def shard(plan: Plan, k: int, n: int, durations: dict | None = None) -> Plan:
    """The part of ``plan`` that shard ``k`` of ``n`` runs (1-based)."""
    if n == 1:
        return plan
    durations = durations or {}
    history = durations.get("classes", {})
    startups = durations.get("cluster_startup_s", {})

    items = []  # (name, weight in tests, weight in seconds or None, payload)
    for unit in plan.plain:
        name = unit.label or str(unit.tests[0])
        seconds = sum(history[_class_name(c)] for c in unit.classes
                      if _class_name(c) in history) if unit.classes else None
        known = unit.classes and all(_class_name(c) in history for c in unit.classes)
        items.append((name, len(unit.tests), seconds if known else None, ("plain", unit)))
    chains: dict[int, list] = {}
    for group in plan.groups:
        chains.setdefault(group.cluster, []).append(group)
    for number, groups in chains.items():
        classes = [c for g in groups for c in g.classes]
        known = all(_class_name(c) in history for c in classes)
        seconds = sum(history.get(_class_name(c), 0.0) for c in classes) + float(
            startups.get(str(max(g.requirement.size for g in groups)), 0.0))
        name = "/".join(_class_name(c) for c in classes)
        items.append((name, sum(len(g.tests) for g in groups) + 1,
                      seconds if known else None, ("chain", groups)))

    use_seconds = bool(items) and all(seconds is not None for _, _, seconds, _ in items)
    weight = (lambda item: item[2]) if use_seconds else (lambda item: float(item[1]))
    loads = [0.0] * n
    mine_plain, mine_groups = set(), set()
    for item in sorted(items, key=lambda it: (-weight(it), it[0])):
        target = min(range(n), key=lambda i: (loads[i], i))
        loads[target] += weight(item)
        if target == k - 1:
            kind, payload = item[3]
            if kind == "plain":
                mine_plain.add(id(payload))
            else:
                mine_groups.update(id(g) for g in payload)
    return Plan([u for u in plan.plain if id(u) in mine_plain],
                [g for g in plan.groups if id(g) in mine_groups],
                plan.requirements, reordered=True)
