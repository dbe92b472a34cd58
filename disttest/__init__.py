"""disttest: unittest-based testing of distributed Python code on live local clusters.

This module is the public API for test authors. It stays cheap to import,
because node processes import the package too: names are loaded on first use.
Machinery for tool authors (the cluster pool, requirements, configuration,
events) is in :mod:`disttest.tooling`.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "DistributedTestCase": "disttest.case",
    "cluster_size": "disttest.decorators",
    "tag": "disttest.decorators",
    "fresh_cluster": "disttest.decorators",
    "distributed": "disttest.case",
    "requires_real_cluster": "disttest.decorators",
    "wait_until": "disttest.case",
    "Cluster": "disttest.clusters.cluster",
    "Node": "disttest.clusters.node",
    "Spawned": "disttest.clusters.remote",
    "start_cluster": "disttest.helpers",
    "cluster": "disttest.helpers",
    "current_cluster": "disttest.helpers",
    "ClusterTestHelper": "disttest.helpers",
    "main": "disttest.program",
    "DistributedTestLoader": "disttest.loader",
    "DistributedTestRunner": "disttest.runner",
    "DistributedTestResult": "disttest.result",
    "Diagnosis": "disttest.errors",
    "DisttestError": "disttest.errors",
    "ConfigError": "disttest.errors",
    "ClusterStartError": "disttest.errors",
    "NodeCrashedError": "disttest.errors",
    "RemoteError": "disttest.errors",
    "PortRangeExhausted": "disttest.errors",
    "CallTimeoutError": "disttest.errors",
    "SerializationError": "disttest.errors",
    "NetworkModeError": "disttest.errors",
    "History": "disttest.history.recorder",
    "HistoryFormatError": "disttest.history.recorder",
    "Model": "disttest.history.models",
    "Register": "disttest.history.models",
    "CASRegister": "disttest.history.models",
    "KVMap": "disttest.history.models",
    "SetModel": "disttest.history.models",
    "Counter": "disttest.history.models",
    "FIFOQueue": "disttest.history.models",
    "check_linearizable": "disttest.history.checker",
    "CheckResult": "disttest.history.checker",
    "assert_linearizable": "disttest.history.assertions",
    "NonLinearizableError": "disttest.history.assertions",
    "Nemesis": "disttest.history.nemesis",
}

__all__ = sorted(_EXPORTS) + ["this_node"]

# Names that moved to disttest.tooling: still found here, with a warning.
_MOVED = {"ClusterPool", "Requirement", "Config", "load_config"}


def __getattr__(name: str) -> object:
    if name == "this_node":
        return importlib.import_module("disttest.this_node")
    if name in _MOVED:
        import warnings

        warnings.warn(f"disttest.{name} is machinery for tool authors and moved: "
                      f"use disttest.tooling.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("disttest.tooling"), name)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'disttest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
