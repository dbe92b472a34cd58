"""Cutting a plan into work items for ``-j N`` workers, longest first.

An item is what one worker runs with one cluster: a *chain* (every plan group
served by one planned cluster, in planned order, so the cluster starts once
and grows) or one plain unit (a class, or a module with fixtures). Weights
are seconds from the durations history (class run times plus cluster
start-up), else test counts. When one chain would hold the run back -- it
weighs more than an even share of the run, as when every class fits one
growing cluster -- it is split across workers into parts that each start
their own cluster: at most one extra start per extra worker, kept only if the
estimated wall time drops by more than the starts cost.
"""
from __future__ import annotations

import math

from disttest.errors import ConfigError
from disttest.planner import Plan, Unit

_WORKER_MEMORY = 48 * 1024 * 1024  # a forked worker with its pool, beyond its nodes


class WorkItem:
    """Units one worker runs in order: ``parts`` are (unit index, test indices or None)."""

    def __init__(self, parts: list[tuple[int, list[int] | None]], weight: float,
                 label: str, starts: int) -> None:
        self.parts = parts
        self.weight = weight
        self.label = label
        self.starts = starts      # clusters this item is expected to start
        self.attempts = 0         # workers that died running it

    def __repr__(self) -> str:
        return f"WorkItem({self.label!r}, {self.weight:.2f})"


def parse_jobs(text: str) -> int | str:
    """ "4" -> 4, "auto" -> "auto"; anything else is refused with what is allowed."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError.bad_value("command line --jobs", "jobs", text,
                                    'a whole number of workers from 1 up, or "auto"')
    return value


def resolve_jobs(jobs: int | str, plan: Plan, per_node_memory: int = 24 * 1024 * 1024) -> int:
    """Workers to use: ``jobs``, or for "auto" the usable CPUs or what memory
    allows for the largest planned cluster per worker, whichever is lower."""
    if jobs != "auto":
        return int(jobs)
    from disttest.environment import machine_resources

    resources = machine_resources()
    largest = max((g.requirement.size for g in plan.groups
                   if not g.requirement.simulated and not g.requirement.hosts), default=0)
    per_worker = _WORKER_MEMORY + largest * per_node_memory
    by_memory = int(resources.available_memory * 0.8) // per_worker
    return max(1, min(resources.cpus, by_memory))


def all_units(plan: Plan) -> list[Unit]:
    """Every unit of the plan, plain first: item parts index into this list."""
    return list(plan.plain) + [u for g in plan.groups for u in g.units]


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class _Weights:
    """Seconds from the history; a unit it does not know (new, renamed) weighs
    the history's mean seconds per test; with no history at all, test counts."""

    def __init__(self, units: list[Unit], durations: dict) -> None:
        self.history = durations.get("classes", {}) if isinstance(durations, dict) else {}
        self.startups = durations.get("cluster_startup_s", {}) \
            if isinstance(durations, dict) else {}
        known = [u for u in units if self._known(u)]
        self.seconds = bool(known)
        tests = sum(len(u.tests) for u in known)
        self.per_test = sum(self._recorded(u) for u in known) / tests if tests else 1.0

    def _known(self, unit: Unit) -> bool:
        return bool(unit.classes) and all(_class_name(c) in self.history for c in unit.classes)

    def _recorded(self, unit: Unit) -> float:
        return sum(float(self.history[_class_name(c)]) for c in unit.classes)

    def unit(self, unit: Unit) -> float:
        if not self.seconds:
            return float(len(unit.tests))
        return self._recorded(unit) if self._known(unit) else self.per_test * len(unit.tests)

    def start(self, size: int) -> float:
        if self.seconds:
            return float(self.startups.get(str(size), 0.1))
        return 0.5  # without history a start weighs half a test


def make_items(plan: Plan, jobs: int, durations: dict | None = None, *,
               reuse: bool = True) -> list[WorkItem]:
    """The plan's work items for ``jobs`` workers, heaviest first."""
    units = all_units(plan)
    weights = _Weights(units, durations or {})
    index = {id(u): i for i, u in enumerate(units)}
    items = [WorkItem([(index[id(u)], None)], weights.unit(u), u.label or str(u.tests[0]), 0)
             for u in plan.plain]
    chains: dict[int, list] = {}
    for group in plan.groups:
        chains.setdefault(group.cluster, []).append(group)
    for groups in chains.values():
        chain_units = [u for g in groups for u in g.units]
        if not reuse:  # every class starts its own cluster anyway: nothing to keep together
            items.extend(WorkItem([(index[id(u)], None)],
                                  weights.unit(u) + weights.start(u.requirement.size),
                                  u.label, 1) for u in chain_units)
            continue
        size = max(g.requirement.size for g in groups)
        items.append(WorkItem([(index[id(u)], None) for u in chain_units],
                              sum(weights.unit(u) for u in chain_units) + weights.start(size),
                              chain_units[0].label, 1))
    if jobs > 1:
        items = _split_heavy(items, units, weights, jobs)
    return sorted(items, key=lambda item: (-item.weight, item.label))


def makespan(weights: list[float], jobs: int) -> float:
    """Wall time of handing ``weights`` out longest first to ``jobs`` workers."""
    loads = [0.0] * max(1, jobs)
    for weight in sorted(weights, reverse=True):
        loads[loads.index(min(loads))] += weight
    return max(loads)


def _split_heavy(items: list[WorkItem], units: list[Unit], weights: _Weights,
                 jobs: int) -> list[WorkItem]:
    """Split chains that hold the run back, while that shortens the estimate."""
    items = list(items)
    while True:
        current = makespan([i.weight for i in items], jobs)
        candidates = [i for i in items if i.starts == 1 and len(i.parts) > 1
                      and i.weight >= current - 1e-9]
        if not candidates:
            return items
        heaviest = max(candidates, key=lambda i: i.weight)
        best, best_span = None, current
        for k in range(2, min(jobs, len(heaviest.parts)) + 1):
            parts = _split(heaviest, units, weights, k)
            rest = [i.weight for i in items if i is not heaviest]
            span = makespan(rest + [p.weight for p in parts], jobs)
            if span < best_span - 1e-9:
                best, best_span = parts, span
        if best is None:
            return items
        items.remove(heaviest)
        items.extend(best)


def _split(item: WorkItem, units: list[Unit], weights: _Weights, k: int) -> list[WorkItem]:
    """``item``'s units cut into ``k`` runs of consecutive units of about equal
    weight: each part keeps the planned order, and since the plan orders a
    chain by size, each part's cluster starts near the size it needs and
    grows least."""
    unit_weights = [weights.unit(units[p[0]]) for p in item.parts]
    total = sum(unit_weights)
    buckets: list[list] = [[]]
    done = 0.0
    for part, weight in zip(item.parts, unit_weights):
        remaining_parts = len(item.parts) - sum(len(b) for b in buckets)
        cut = done + weight / 2 > total * len(buckets) / k and buckets[-1]
        if (cut or remaining_parts <= k - len(buckets)) and len(buckets) < k and buckets[-1]:
            buckets.append([])
        buckets[-1].append(part)
        done += weight
    result = []
    for number, bucket in enumerate(buckets):
        size = max(units[p[0]].requirement.size for p in bucket)
        result.append(WorkItem(bucket, sum(weights.unit(units[p[0]]) for p in bucket)
                               + weights.start(size),
                               f"{units[bucket[0][0]].label} (part {number + 1})", 1))
    return result


def describe(items: list[WorkItem], jobs: int, plan_starts: int) -> str:
    """The ``--plan`` lines of a parallel run."""
    starts = sum(i.starts for i in items)
    lines = [f"-j {jobs}: {len(items)} work item(s), longest first; {starts} cluster "
             f"start(s) ({starts - plan_starts:+d} for parallelism); estimated wall "
             f"time {math.ceil(makespan([i.weight for i in items], jobs) * 100) / 100:g} "
             f"of {sum(i.weight for i in items):g} (units: seconds from the durations "
             "history, else tests)"]
    for number, item in enumerate(items, 1):
        lines.append(f"    item {number}: {item.label}, {len(item.parts)} unit(s), "
                     f"weight {item.weight:g}")
    return "\n".join(lines)
