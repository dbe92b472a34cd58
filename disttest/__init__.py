"""disttest: unittest-based testing of distributed Python code on live local clusters.

This module is the public API. It stays cheap to import, because node
processes import the package too: names are loaded on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "DistributedTestCase": "disttest.case",
    "cluster_size": "disttest.case",
    "tag": "disttest.case",
    "fresh_cluster": "disttest.case",
    "distributed": "disttest.case",
    "requires_real_cluster": "disttest.case",
    "wait_until": "disttest.case",
    "Cluster": "disttest.clusters.cluster",
    "Node": "disttest.clusters.node",
    "ClusterPool": "disttest.clusters.pool",
    "Requirement": "disttest.requirements",
    "start_cluster": "disttest.helpers",
    "cluster": "disttest.helpers",
    "current_cluster": "disttest.helpers",
    "ClusterTestHelper": "disttest.helpers",
    "main": "disttest.program",
    "DistributedTestLoader": "disttest.loader",
    "DistributedTestRunner": "disttest.runner",
    "DistributedTestResult": "disttest.result",
    "Config": "disttest.config",
    "load_config": "disttest.config",
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


def __getattr__(name: str) -> object:
    if name == "this_node":
        return importlib.import_module("disttest.this_node")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'disttest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
