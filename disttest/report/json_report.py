"""The ``--json-report`` document: versioned, documented in docs/reports.md."""
from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

from disttest.report.histories import history_of

SCHEMA = "disttest-report"
VERSION = 1


def build(result, stats, config=None) -> dict[str, Any]:
    usage = result.cluster_usage
    clusters = []
    for cid, c in stats.clusters.items():
        u = usage.get(cid, {"classes": [], "tests": 0, "failures": 0})
        clusters.append({
            "id": cid, "size": c.size, "simulated": c.simulated,
            "network": c.network or "direct", "network_reason": c.network_reason or "declared",
            "startup_s": round(c.startup_s, 6), "classes": list(u["classes"]),
            "tests": u["tests"], "failures": u["failures"], "reuses": c.reuses,
            "grows": c.grows, "nodes_replaced": c.nodes_replaced,
            "reused_from_previous_run": c.reused_from_previous_run, "kept": c.kept,
            "startup": {k: round(v, 6) for k, v in c.timings.items()},
            "peak_memory_bytes": c.peak_memory,
            "nodes": c.nodes,
        })
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "ci": bool(getattr(config, "ci", False)),
        "ci_provider": getattr(config, "ci_provider", None),
        # A test that a signal ended without an outcome does not count as a success.
        "successful": result.wasSuccessful() and not any(
            r.outcome == "interrupted" for r in result.records),
        "tests_run": result.testsRun,
        "failures": len(result.failures),
        "errors": len(result.errors),
        "skipped": len(result.skipped),
        "expected_failures": len(result.expectedFailures),
        "unexpected_successes": len(result.unexpectedSuccesses),
        "duration_s": round(stats.duration_s, 6),
        "cluster_management_s": round(stats.management_s, 6),
        "workers": stats.workers,
        "cluster_starts": stats.cluster_starts,
        "cluster_reuses": stats.cluster_reuses,
        "cluster_grows": stats.cluster_grows,
        "nodes_started": stats.nodes_started,
        "node_crashes": stats.node_crashes,
        "clusters": clusters,
        "tests": [{"id": r.id, "classname": r.classname, "name": r.name,
                   "outcome": r.outcome, "duration_s": round(r.duration_s, 6),
                   "cluster": r.cluster, "message": r.message, "subtests": r.subtests,
                   "history": history_of(r.details)}
                  for r in result.records],
        "faults": list(stats.faults),
        "undeclared_ports": list(stats.undeclared_ports),
        "fallbacks": list(stats.fallbacks),
        "diagnoses": list(stats.diagnoses),
        "leaks": list(stats.leaks),
    }


def write(path: str, document: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)  # a reader never sees half a report
