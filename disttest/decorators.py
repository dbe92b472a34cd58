"""The decorators that declare what a class or a test needs: its size, tags,
a cluster of its own, real node processes (``@disttest.distributed``, which
opts a plain TestCase in, is with DistributedTestCase in case.py).
"""
from __future__ import annotations

import unittest
from typing import Callable

from disttest.errors import ConfigError


def cluster_size(n: int) -> Callable:
    """Ask for ``n`` nodes: on a class, its size; on a test method, that test's."""
    def decorate(obj):
        if isinstance(obj, type):
            obj.cluster_size = n
        else:
            obj.__disttest_cluster_size__ = n
        return obj
    return decorate


def tag(*names: str) -> Callable:
    """Add tags to a class or a test method (for ``--only``/``--exclude``)."""
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError.bad_value("disttest.tag()", "tag", name,
                                        "a non-empty string such as 'slow'")

    def decorate(obj):
        # On the class's (or method's) own dict, so a subclass's tags add to its base's.
        obj.__disttest_tags__ = frozenset(getattr(obj, "__disttest_tags__", ())) | set(names)
        return obj
    return decorate


def fresh_cluster(cls: type) -> type:
    """Never share this class's cluster: it gets its own, stopped after it."""
    cls.fresh_cluster = True
    return cls


def requires_real_cluster(obj):
    """Skip a class or test when its nodes are simulated (threads, not processes)."""
    obj.__disttest_requires_real__ = True
    if isinstance(obj, type):
        return obj

    import functools

    @functools.wraps(obj)
    def wrapper(self, *args, **kwargs):
        cluster = type(self).cluster
        if cluster is not None and cluster.simulated:
            raise unittest.SkipTest("needs real node processes; this cluster is simulated")
        return obj(self, *args, **kwargs)
    return wrapper
