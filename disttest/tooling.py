"""Machinery for tool authors: runners, plugins, CI scripts and benchmarks.

Test authors need none of this (their API is ``disttest`` itself). A tool
that manages clusters or reads configuration the way ``python -m disttest``
does imports it from here::

    from disttest.tooling import ClusterPool, Requirement, load_config

    pool = ClusterPool(load_config())
    cluster = pool.acquire(Requirement(3))
    ...
    pool.release(cluster)
    pool.shutdown()

Names are loaded on first use, like the package's own.
"""
from __future__ import annotations

import importlib

# public name -> module that defines it
_EXPORTS = {
    "ClusterPool": "disttest.clusters.pool",
    "Requirement": "disttest.requirements",
    "Config": "disttest.config",
    "load_config": "disttest.config",
    "EventBus": "disttest.events",
    "Event": "disttest.events",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'disttest.tooling' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
