"""DistributedTestLoader and test selection by tags.

Loading is unittest's own (names, discovery, ``-k``, ``load_tests``); what
disttest adds happens on the loaded tests: the tags of each test, selection
with ``--only``/``--exclude``, and stand-ins that report cluster tests as
skipped when clusters are turned off.

A module that manages clusters by hand (its code, not a comment or a string,
uses ``ClusterTestHelper``, ``start_cluster`` or ``disttest.cluster()``) has
its tests tagged ``cluster`` and ``distributed``, so tag selection treats them
as cluster tests too.
"""
from __future__ import annotations

import ast
import re
import sys
import unittest
from functools import lru_cache

from disttest.planner import is_cluster_class

__unittest = True

_MANUAL = re.compile(r"\b(ClusterTestHelper|start_cluster|disttest\.cluster\s*\()")


class DistributedTestLoader(unittest.TestLoader):
    """The loader ``disttest.main()`` and ``python -m disttest`` use.

    It loads exactly as unittest's does (names, discovery, ``-k``,
    ``load_tests``): what disttest adds (tags, ``--only``/``--exclude``,
    planning by cluster) acts on the loaded suite, so tests load the same way
    under any runner. It is the place for a project to change loading:
    subclass it and pass ``disttest.main(testLoader=MyLoader())``.
    """


@lru_cache(maxsize=None)
def _module_uses_clusters_by_hand(module_name: str) -> bool:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
    except OSError:
        return False
    return bool(_MANUAL.search(source)) and _uses_in_code(source)


_HAND_NAMES = frozenset({"ClusterTestHelper", "start_cluster"})


def _uses_in_code(source: str) -> bool:
    """True when code (not a comment, docstring or string) uses the manual API."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return True  # cannot tell: trust the text
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in _HAND_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr in _HAND_NAMES:
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "disttest" and any(
                alias.name in _HAND_NAMES for alias in node.names):
            return True
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "cluster" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "disttest"):
            return True
    return False


def tags_of(test) -> frozenset[str]:
    """Declared tags of a test, with ``distributed`` implied on cluster tests."""
    cls = type(test)
    tags: set[str] = set()
    if is_cluster_class(cls):
        tags.update(getattr(cls, "tags", ()) or ())
        tags.add("distributed")
    method = getattr(test, getattr(test, "_testMethodName", ""), None)
    tags.update(getattr(method, "__disttest_tags__", ()) or ())
    tags.update(getattr(cls, "__disttest_tags__", ()) or ())
    if isinstance(test, unittest.TestCase) and _module_uses_clusters_by_hand(cls.__module__):
        tags.update(("cluster", "distributed"))
    return frozenset(tags)


def select(tests: list, only: list[str], exclude: list[str]) -> tuple[list, bool]:
    """(tests kept, whether anything was removed)."""
    if not only and not exclude:
        return tests, False
    kept = []
    for test in tests:
        if not isinstance(test, unittest.TestCase):
            kept.append(test)  # opaque suites and failed imports are always kept
            continue
        tags = tags_of(test)
        if only and not tags.intersection(only):
            continue
        if exclude and tags.intersection(exclude):
            continue
        kept.append(test)
    return kept, len(kept) != len(tests)


def unknown_tags(tests: list, only: list[str], exclude: list[str]) -> str | None:
    """A warning naming the ``--only``/``--exclude`` tags no test has, and the
    tags that exist; None when every tag is known."""
    asked = list(dict.fromkeys([*only, *exclude]))
    if not asked:
        return None
    known = set().union(*(tags_of(t) for t in tests if isinstance(t, unittest.TestCase)))
    unknown = [tag for tag in asked if tag not in known]
    if not unknown:
        return None
    return (f"no test has the tag(s) {', '.join(map(repr, unknown))} given to "
            f"--only/--exclude; the tags of these tests are: "
            f"{', '.join(sorted(known)) or 'none'}")


class SkippedTest:
    """Stands in for a test in a suite and reports it skipped with ``reason``."""

    def __init__(self, test: unittest.TestCase, reason: str) -> None:
        self.test = test
        self.reason = reason

    def countTestCases(self) -> int:
        return 1

    def id(self) -> str:
        return self.test.id()

    def __str__(self) -> str:
        return str(self.test)

    def __call__(self, result):
        return self.run(result)

    def run(self, result):
        result.startTest(self.test)
        try:
            result.addSkip(self.test, self.reason)
        finally:
            result.stopTest(self.test)
        return result
