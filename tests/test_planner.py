"""The planner: units that stay together, the order of groups, and what each
group does to its cluster (start, grow, reuse).

Test classes are made here, in throwaway modules registered in
``sys.modules`` (the planner looks a class's module up to see whether it has
``setUpModule``). Nothing starts a cluster.
"""
from __future__ import annotations

import io
import sys
import types
import unittest

import disttest
from disttest.config import Config
from disttest.errors import DisttestError
from disttest.planner import (Group, Unit, _assign_clusters, format_plan, iter_tests,
                              make_units, plan)
from disttest.requirements import Requirement
from disttest.requirements import class_requirement

CONFIG = Config()


def requirement_for(cls, methods):
    """As the runner's: None for a bad declaration (the class reports it itself)."""
    try:
        return class_requirement(cls, CONFIG, None, methods)
    except DisttestError:
        return None


class ModuleMaker(unittest.TestCase):
    """Helpers that make throwaway modules and test classes."""

    def module(self, name: str, fixtures: bool = False) -> str:
        name = f"_planner_sample_{self._testMethodName}_{name}"
        module = types.ModuleType(name)
        if fixtures:
            module.setUpModule = lambda: None
            module.tearDownModule = lambda: None
        sys.modules[name] = module
        self.addCleanup(sys.modules.pop, name, None)
        return name

    @staticmethod
    def plain(module: str, name: str, *methods: str) -> type:
        body = {m: (lambda self: None) for m in methods or ("test_a",)}
        return type(name, (unittest.TestCase,), {"__module__": module, **body})

    @staticmethod
    def clustered(module: str, name: str, *methods: str, **declaration) -> type:
        body = {m: (lambda self: None) for m in methods or ("test_a",)}
        return type(name, (disttest.DistributedTestCase,),
                    {"__module__": module, **declaration, **body})

    @staticmethod
    def instances(cls: type, *methods: str) -> list:
        names = methods or unittest.TestLoader().getTestCaseNames(cls)
        return [cls(m) for m in names]


def labels(tests) -> list[str]:
    return [f"{type(t).__name__}.{t._testMethodName}" for t in tests]


class IterTests(ModuleMaker):

    def test_flattens_nested_suites_but_keeps_suites_with_their_own_run(self):
        m = self.module("m")
        a, b = self.plain(m, "A", "test_1", "test_2"), self.plain(m, "B")

        class Opaque(unittest.TestSuite):
            def run(self, result, debug=False):
                return result

        opaque = Opaque([b("test_a")])
        suite = unittest.TestSuite([unittest.TestSuite([a("test_1"), unittest.TestSuite(
            [a("test_2")])]), opaque])
        leaves = list(iter_tests(suite))
        self.assertEqual(labels(leaves[:2]), ["A.test_1", "A.test_2"])
        self.assertIs(leaves[2], opaque)
        self.assertEqual(len(leaves), 3)


class MakeUnits(ModuleMaker):

    def test_classes_stay_contiguous_in_order_of_first_appearance(self):
        m = self.module("m")
        a, b = self.plain(m, "A", "test_1", "test_2"), self.plain(m, "B", "test_1")
        units = make_units([a("test_1"), b("test_1"), a("test_2")])
        self.assertEqual([u.classes for u in units], [[a], [b]])
        self.assertEqual(labels(units[0].tests), ["A.test_1", "A.test_2"])

    def test_a_module_with_fixtures_is_one_unit(self):
        plain_mod, fixture_mod = self.module("plain"), self.module("fix", fixtures=True)
        x, y = self.plain(fixture_mod, "X"), self.clustered(fixture_mod, "Y", cluster_size=2)
        z = self.plain(plain_mod, "Z")
        units = make_units([x("test_a"), z("test_a"), y("test_a")])
        self.assertEqual([u.classes for u in units], [[x, y], [z]])

    def test_a_module_named_whole_is_one_unit(self):
        # A foreign runner's module-wide fixtures (the pytest plugin names them).
        m = self.module("m")
        x, y = self.plain(m, "X"), self.clustered(m, "Y", cluster_size=2)
        z = self.plain(self.module("other"), "Z")
        tests = [x("test_a"), z("test_a"), y("test_a")]
        self.assertEqual([u.classes for u in make_units(tests, whole_modules={m})],
                         [[x, y], [z]])
        self.assertEqual(len(make_units(tests)), 3)

    def test_a_module_without_fixtures_is_split_by_class(self):
        m = self.module("m")
        x, y = self.plain(m, "X"), self.plain(m, "Y")
        self.assertEqual(len(make_units([x("test_a"), y("test_a")])), 2)

    def test_suites_and_non_tests_are_units_of_their_own(self):
        m = self.module("m")
        a = self.plain(m, "A")
        first, second = unittest.TestSuite([a("test_a")]), unittest.TestSuite()
        units = make_units([first, a("test_a"), second])
        self.assertEqual(len(units), 3)  # each opaque item alone, never merged
        self.assertEqual([u.tests for u in (units[0], units[2])], [[first], [second]])
        self.assertEqual(units[0].classes, [])


class Ordering(ModuleMaker):

    def setUp(self):
        self.m = self.module("m")

    def test_plain_first_in_original_order_then_clusters_ascending(self):
        c5 = self.clustered(self.m, "C5", cluster_size=5)
        p1 = self.plain(self.m, "P1")
        c2 = self.clustered(self.m, "C2", cluster_size=2)
        p2 = self.plain(self.m, "P2")
        c3 = self.clustered(self.m, "C3", cluster_size=3)
        tests = [c5("test_a"), p1("test_a"), c2("test_a"), p2("test_a"), c3("test_a")]
        result = plan(tests, requirement_for)
        self.assertTrue(result.reordered)
        self.assertEqual(labels(result.ordered_tests()),
                         ["P1.test_a", "P2.test_a", "C2.test_a", "C3.test_a", "C5.test_a"])
        self.assertEqual([(g.requirement.size, g.action, g.cluster) for g in result.groups],
                         [(2, "start", 1), (3, "grow", 1), (5, "grow", 1)])
        self.assertEqual(result.cluster_starts, 1)
        self.assertEqual(result.requirements[c5].size, 5)

    def test_equal_requirements_share_a_group(self):
        a = self.clustered(self.m, "A", cluster_size=3)
        b = self.clustered(self.m, "B", cluster_size=3)
        result = plan(self.instances(a) + self.instances(b), requirement_for)
        self.assertEqual(len(result.groups), 1)
        self.assertEqual(result.groups[0].classes, [a, b])
        self.assertEqual(result.cluster_starts, 1)

    def test_same_size_other_ports_reuses_the_cluster(self):
        a = self.clustered(self.m, "A", cluster_size=3)
        b = self.clustered(self.m, "B", cluster_size=3, node_ports=("app", "admin"))
        result = plan(self.instances(a) + self.instances(b), requirement_for)
        self.assertEqual([(g.action, g.cluster) for g in result.groups],
                         [("start", 1), ("reuse", 1)])

    def test_fresh_classes_get_their_own_cluster(self):
        shared = self.clustered(self.m, "Shared", cluster_size=2)
        fresh1 = disttest.fresh_cluster(self.clustered(self.m, "Fresh1", cluster_size=2))
        fresh2 = disttest.fresh_cluster(self.clustered(self.m, "Fresh2", cluster_size=2))
        bigger = self.clustered(self.m, "Bigger", cluster_size=4)
        tests = sum((self.instances(c) for c in (fresh1, shared, fresh2, bigger)), [])
        result = plan(tests, requirement_for)
        self.assertEqual([(g.classes, g.action, g.cluster) for g in result.groups],
                         [([shared], "start", 1), ([bigger], "grow", 1),
                          ([fresh1], "start", 2), ([fresh2], "start", 3)])
        self.assertEqual(result.cluster_starts, 3)

    def test_other_env_or_network_are_separate_clusters(self):
        env = self.clustered(self.m, "Env", cluster_size=2, node_env={"MODE": "x"})
        direct = self.clustered(self.m, "Direct", cluster_size=3)
        proxy = self.clustered(self.m, "Proxy", cluster_size=2, network="proxy")
        direct2 = self.clustered(self.m, "Direct2", cluster_size=2)
        tests = sum((self.instances(c) for c in (env, direct, proxy, direct2)), [])
        result = plan(tests, requirement_for)
        # groups by key in order of first appearance, ascending size inside a key
        self.assertEqual([(g.classes, g.action, g.cluster) for g in result.groups],
                         [([env], "start", 1), ([direct2], "start", 2),
                          ([direct], "grow", 2), ([proxy], "start", 3)])
        self.assertEqual(result.cluster_starts, 3)

    def test_method_sizes_count_only_for_selected_methods(self):
        sized = self.clustered(self.m, "Sized", "test_small", "test_big", cluster_size=2)
        sized.test_big = disttest.cluster_size(4)(lambda self: None)
        self.assertEqual(plan(self.instances(sized), requirement_for).groups[0].requirement.size,
                         4)
        self.assertEqual(plan([sized("test_small")], requirement_for)
                         .groups[0].requirement.size, 2)

    def test_a_bad_declaration_is_left_to_the_class(self):
        bad = self.clustered(self.m, "Bad", cluster_size=0)
        good = self.clustered(self.m, "Good", cluster_size=2)
        result = plan(self.instances(bad) + self.instances(good), requirement_for)
        self.assertNotIn(bad, result.requirements)
        self.assertEqual([u.classes for u in result.plain], [[bad]])
        self.assertEqual([g.classes for g in result.groups], [[good]])

    def test_a_module_with_fixtures_runs_whole_in_its_largest_group(self):
        fix = self.module("fix", fixtures=True)
        mod_small = self.clustered(fix, "ModSmall", cluster_size=2)
        mod_plain = self.plain(fix, "ModPlain")
        mod_big = self.clustered(fix, "ModBig", cluster_size=4)
        other = self.clustered(self.m, "Other", cluster_size=4)
        tests = sum((self.instances(c) for c in (other, mod_small, mod_plain, mod_big)), [])
        result = plan(tests, requirement_for)
        self.assertEqual(labels(result.ordered_tests()),
                         ["Other.test_a", "ModSmall.test_a", "ModPlain.test_a", "ModBig.test_a"])
        self.assertEqual(len(result.groups), 1)
        group = result.groups[0]
        self.assertEqual(group.classes, [other, mod_small, mod_plain, mod_big])
        self.assertEqual(group.cluster_classes, [other, mod_small, mod_big])
        self.assertEqual(result.cluster_classes, 3)
        self.assertTrue(format_plan(result).endswith(
            "4 test(s); 1 cluster start(s) for 3 cluster class(es)"))

    def test_a_plain_suite_is_not_reordered(self):
        a, b = self.plain(self.m, "A", "test_1", "test_2"), self.plain(self.m, "B")
        result = plan([a("test_1"), b("test_a"), a("test_2")], requirement_for)
        self.assertFalse(result.reordered)
        self.assertEqual(result.groups, [])
        self.assertEqual(result.cluster_starts, 0)


class NoReuse(ModuleMaker):

    def test_every_cluster_class_starts_its_own(self):
        m, fix = self.module("m"), self.module("fix", fixtures=True)
        a = self.clustered(m, "A", cluster_size=2)
        b = self.clustered(m, "B", cluster_size=2)
        c = self.clustered(m, "C", cluster_size=3)
        mod_plain, mod_cluster = self.plain(fix, "P"), self.clustered(fix, "Q", cluster_size=3)
        tests = sum((self.instances(k) for k in (a, b, c, mod_plain, mod_cluster)), [])
        result = plan(tests, requirement_for, reuse=False)
        self.assertEqual([(g.action, g.cluster, g.starts) for g in result.groups],
                         [("start", 1, 2), ("start", 3, 2)])
        self.assertEqual(result.cluster_starts, 4)  # A, B, C, Q; never the plain P
        self.assertTrue(format_plan(result).endswith(
            "4 cluster start(s) for 4 cluster class(es)"), format_plan(result))
        with_reuse = plan(tests, requirement_for)
        self.assertEqual(with_reuse.cluster_starts, 1)
        self.assertTrue(format_plan(with_reuse).endswith(
            "1 cluster start(s) for 4 cluster class(es)"))


class AssignClusters(unittest.TestCase):
    """``_assign_clusters`` on hand-made groups: what the pool will do."""

    def groups(self, *requirements: Requirement) -> list[Group]:
        return [Group(req, [Unit()]) for req in requirements]

    def test_start_grow_reuse(self):
        groups = self.groups(Requirement(2), Requirement(4), Requirement(3),
                             Requirement(2, env=(("A", "1"),)), Requirement(5))
        _assign_clusters(groups, reuse=True)
        self.assertEqual([(g.action, g.cluster) for g in groups],
                         [("start", 1), ("grow", 1), ("reuse", 1), ("start", 2), ("grow", 1)])
        self.assertEqual([g.starts for g in groups], [1, 0, 0, 1, 0])

    def test_fresh_never_shares(self):
        groups = self.groups(Requirement(2, fresh=True), Requirement(2), Requirement(2,
                                                                                     fresh=True))
        _assign_clusters(groups, reuse=True)
        self.assertEqual([(g.action, g.cluster) for g in groups],
                         [("start", 1), ("start", 2), ("start", 3)])

    def test_without_reuse_every_group_starts(self):
        groups = self.groups(Requirement(2), Requirement(3))
        _assign_clusters(groups, reuse=False)
        self.assertEqual([g.action for g in groups], ["start", "start"])


class RunnerKeepsPlainSuites(unittest.TestCase):
    """Through DistributedTestRunner: a suite without cluster tests runs as given."""

    def test_interleaved_plain_suite_runs_in_its_own_order(self):
        order = []

        class A(unittest.TestCase):
            def test_1(self):
                order.append("A.test_1")

            def test_2(self):
                order.append("A.test_2")

        class B(unittest.TestCase):
            def test_1(self):
                order.append("B.test_1")

        suite = unittest.TestSuite([A("test_1"), B("test_1"), A("test_2")])
        runner = disttest.DistributedTestRunner(stream=io.StringIO(), verbosity=0,
                                                config=CONFIG)
        result = runner.run(suite)
        self.assertTrue(result.wasSuccessful())
        self.assertEqual(order, ["A.test_1", "B.test_1", "A.test_2"])


if __name__ == "__main__":
    unittest.main()
