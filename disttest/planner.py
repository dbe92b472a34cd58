"""Plan: which cluster each test class needs, and the order that starts fewest.

The loaded suite is flattened into *units* that must stay contiguous: a test
class (so ``setUpClass`` runs once), or a whole module when it defines
``setUpModule``/``tearDownModule`` (so those run once, as under unittest).
Units that need no cluster run first, in their original order. Cluster units
are grouped by requirement; groups sharing a compatibility key run together
in increasing size, so one cluster starts small and grows, and is reset
between classes instead of restarted. A fresh-cluster class gets its own.

A suite with no cluster test is never reordered.
"""
from __future__ import annotations

import sys
import unittest
TYPE_CHECKING = False  # typing is for annotations only: a plain run skips its import
if TYPE_CHECKING:
    from typing import Iterable, Iterator

    from disttest.requirements import Requirement


__unittest = True


_case_class = None  # DistributedTestCase, imported on first use (plain runs never do)


def is_cluster_class(cls: type) -> bool:
    global _case_class
    if _case_class is None:
        from disttest.case import DistributedTestCase as _case_class
    return isinstance(cls, type) and issubclass(cls, _case_class)


def iter_tests(suite) -> Iterator:
    """Leaves of a suite; a suite class with its own ``run`` is kept whole."""
    if not isinstance(suite, unittest.TestSuite):
        yield suite  # a single test given to the runner
        return
    for item in suite:
        if isinstance(item, unittest.TestSuite) and (
                type(item).run is unittest.TestSuite.run):
            yield from iter_tests(item)
        else:
            yield item


def let_go(suite) -> None:
    """Drop ``suite``'s references to its tests, which a planned suite now holds.

    unittest's TestSuite lets go of each test once it has run, so a finished
    test (and whatever it kept on ``self``) is freed; a suite that was
    reordered into a new one must let go of them as well, or every test of
    the run would stay alive until its end.
    """
    if not isinstance(suite, unittest.TestSuite):
        return
    for index, item in enumerate(list(suite)):
        if isinstance(item, unittest.TestSuite) and type(item).run is unittest.TestSuite.run:
            let_go(item)
        # The hook TestSuite.run itself uses, which keeps countTestCases() right.
        suite._removeTestAtIndex(index)


class Unit:
    """Tests that must run together: one class, or one module with fixtures."""

    # Plain classes, not dataclasses: building a dataclass costs about a
    # millisecond at import, and every run imports this module.
    def __init__(self) -> None:
        self.tests: list = []
        self.classes: list[type] = []
        self.requirement: Requirement | None = None  # None: needs no cluster

    @property
    def label(self) -> str:
        return ", ".join(f"{c.__module__}.{c.__qualname__}" for c in self.classes)


class Group:
    """Consecutive classes served by one cluster requirement."""

    def __init__(self, requirement: Requirement, units: list[Unit] | None = None) -> None:
        self.requirement = requirement
        self.units: list[Unit] = list(units or [])
        self.action = "start"         # start | grow | reuse
        self.cluster = 0              # which planned cluster (1-based)
        self.starts = 0               # clusters this group starts (one per class without reuse)

    @property
    def tests(self) -> list:
        return [t for unit in self.units for t in unit.tests]

    @property
    def classes(self) -> list[type]:
        return [c for unit in self.units for c in unit.classes]

    @property
    def cluster_classes(self) -> list[type]:
        """The classes that get a cluster (a module unit may hold plain classes too)."""
        return [c for c in self.classes if is_cluster_class(c)]


class Plan:
    """Plain units first, then cluster groups in order."""

    def __init__(self, plain: list[Unit], groups: list[Group],
                 requirements: dict[type, Requirement], reordered: bool) -> None:
        self.plain = plain
        self.groups = groups
        self.requirements = requirements
        self.reordered = reordered

    @property
    def cluster_starts(self) -> int:
        return sum(g.starts for g in self.groups)

    @property
    def cluster_classes(self) -> int:
        return sum(len(g.cluster_classes) for g in self.groups)

    def ordered_tests(self) -> list:
        tests = [t for unit in self.plain for t in unit.tests]
        for group in self.groups:
            tests.extend(group.tests)
        return tests

    def take_tests(self) -> list:
        """The tests in planned order, which the plan no longer holds afterwards
        (so each is freed when the suite that runs it lets go of it)."""
        tests = self.ordered_tests()
        for unit in self.plain + [u for group in self.groups for u in group.units]:
            unit.tests = []
        return tests


def _module_has_fixtures(module_name: str) -> bool:
    module = sys.modules.get(module_name)
    return module is not None and (hasattr(module, "setUpModule")
                                   or hasattr(module, "tearDownModule"))


def make_units(tests: Iterable, whole_modules: Iterable[str] = ()) -> list[Unit]:
    """Contiguous units, in the order their first test appears. A module with
    fixtures, or named in ``whole_modules`` (a foreign runner's module-wide
    fixtures), is one unit."""
    whole_modules = set(whole_modules)
    units: list[Unit] = []
    by_key: dict[object, Unit] = {}
    for test in tests:
        cls = type(test)
        if isinstance(test, unittest.TestSuite) or not isinstance(test, unittest.TestCase):
            key: object = ("opaque", id(test))
        elif cls.__module__ in whole_modules or _module_has_fixtures(cls.__module__):
            key = ("module", cls.__module__)
        else:
            key = ("class", cls)
        unit = by_key.get(key)
        if unit is None:
            unit = by_key[key] = Unit()
            units.append(unit)
        unit.tests.append(test)
        if isinstance(test, unittest.TestCase) and cls not in unit.classes:
            unit.classes.append(cls)
    return units


def plan(tests: list, requirement_for, *, reuse: bool = True,
         whole_modules: Iterable[str] = ()) -> Plan:
    """Order ``tests``; ``requirement_for(cls, method_names)`` gives a class's need."""
    units = make_units(tests, whole_modules)
    requirements: dict[type, Requirement] = {}
    for unit in units:
        for cls in unit.classes:
            if is_cluster_class(cls):
                methods = [t._testMethodName for t in unit.tests if type(t) is cls]
                requirement = requirement_for(cls, methods)
                if requirement is not None:  # None: a bad declaration, reported by the class
                    requirements[cls] = requirement
        needs = [requirements[c] for c in unit.classes if c in requirements]
        if needs:
            unit.requirement = max(needs, key=lambda r: r.size)
    plain = [u for u in units if u.requirement is None]
    cluster_units = [u for u in units if u.requirement is not None]
    if not cluster_units:
        return Plan(units, [], requirements, reordered=False)

    # Compatible requirements run together, smallest first, so the cluster grows.
    keys: list = []
    for unit in cluster_units:
        if unit.requirement.key not in keys:
            keys.append(unit.requirement.key)
    ordered = sorted(cluster_units, key=lambda u: (keys.index(u.requirement.key),
                                                   u.requirement.fresh, u.requirement.size))
    groups: list[Group] = []
    for unit in ordered:
        req = unit.requirement
        last = groups[-1] if groups else None
        if last and not req.fresh and last.requirement == req:
            last.units.append(unit)
        else:
            groups.append(Group(req, [unit]))
    _assign_clusters(groups, reuse)
    return Plan(plain, groups, requirements, reordered=True)


def _assign_clusters(groups: list[Group], reuse: bool) -> None:
    """Mirror what the pool will do: start, grow or reuse, per group."""
    clusters: dict[tuple, tuple[int, int]] = {}  # key -> (cluster number, size)
    count = 0
    for group in groups:
        req = group.requirement
        current = clusters.get(req.key)
        if req.fresh or not reuse or current is None:
            group.starts = 1 if reuse else max(1, len(group.cluster_classes))
            count += 1
            group.action, group.cluster = "start", count
            if not req.fresh and reuse:
                clusters[req.key] = (count, req.size)
            count += group.starts - 1  # without reuse: one cluster per class
        else:
            number, size = current
            group.action = "grow" if req.size > size else "reuse"
            group.cluster = number
            clusters[req.key] = (number, max(size, req.size))


def format_plan(plan: Plan) -> str:
    """The text of ``--plan``."""
    lines = []
    plain_tests = sum(len(u.tests) for u in plan.plain)
    if plan.plain:
        lines.append(f"plain tests (no cluster): {plain_tests} test(s) in "
                     f"{len(plan.plain)} class(es) or module(s)")
    for number, group in enumerate(plan.groups, 1):
        verb = {"start": "starts", "grow": "grows", "reuse": "reuses"}[group.action]
        lines.append(f"group {number}: {group.requirement.describe()} — {verb} cluster "
                     f"#{group.cluster}, {len(group.tests)} test(s)")
        for unit in group.units:
            for cls in unit.classes:
                count = sum(1 for t in unit.tests if type(t) is cls)
                lines.append(f"    {cls.__module__}.{cls.__qualname__} ({count} test(s))")
    total = plain_tests + sum(len(g.tests) for g in plan.groups)
    lines.append(f"{total} test(s); {plan.cluster_starts} cluster start(s) for "
                 f"{plan.cluster_classes} cluster class(es)")
    return "\n".join(lines)


def problems(tests: list, requirement_for) -> list[str]:
    """What a run would report as errors before any test ran: modules that fail
    to import, and cluster classes whose declaration is wrong (``--plan``
    checks these as a run does). ``requirement_for(cls, methods)`` raises the
    class's error."""
    from disttest.errors import DisttestError

    found, seen = [], set()
    for test in tests:
        cls = type(test)
        if cls.__module__ == "unittest.loader" and cls.__name__ == "_FailedTest":
            outcome = unittest.TestResult()
            test.run(outcome)  # raises what importing the module raised
            for _, text in outcome.errors:
                last = text.strip().splitlines()[-1]
                found.append(f"{test.id().rpartition('.')[2]}: cannot be imported: {last}")
        elif is_cluster_class(cls) and cls not in seen:
            seen.add(cls)
            try:
                requirement_for(cls, None)
            except DisttestError as error:
                name = f"{cls.__module__}.{cls.__qualname__}"
                problem = error.diagnosis.problem
                found.append(problem if name in problem else f"{name}: {problem}")
    return found


def unkeepable(requirements: dict) -> str | None:
    """Why the clusters of some classes cannot be kept for the next run (said
    before the run: ``--keep-cluster`` keeps only local, direct-network nodes)."""
    reasons: dict[str, list[str]] = {}
    for cls, requirement in requirements.items():
        if requirement.simulated:
            continue
        if requirement.hosts:
            why = "their nodes run on SSH hosts and end with the ssh sessions of this run"
        elif requirement.network != "direct":
            why = (f"network = {requirement.network!r}: the fault proxies or namespaces "
                   "between their nodes belong to this run")
        else:
            continue
        reasons.setdefault(why, []).append(cls.__qualname__)
    if not reasons:
        return None
    return "; ".join(f"the clusters of {', '.join(sorted(names))} are not kept ({why})"
                     for why, names in reasons.items())
