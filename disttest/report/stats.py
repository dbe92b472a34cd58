"""RunStats: what the clusters of a run cost, gathered from events."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from disttest.events import Event


@dataclass
class ClusterStats:
    id: str
    size: int
    simulated: bool = False
    startup_s: float = 0.0
    reused_from_previous_run: bool = False
    reuses: int = 0
    grows: int = 0
    node_crashes: int = 0
    nodes_replaced: int = 0
    stopped: bool = False
    kept: bool = False
    timings: dict = field(default_factory=dict)
    nodes: list = field(default_factory=list)
    network: str = ""          # the network mode it got ("direct", "proxy", "netns", ...)
    network_reason: str = ""   # why: "declared", or what network = "auto" found

    @property
    def peak_memory(self) -> int | None:
        """Sum of the nodes' peak resident memory."""
        peaks = [n["peak_rss_bytes"] for n in self.nodes if n.get("peak_rss_bytes")]
        return sum(peaks) if peaks else None


@dataclass
class RunStats:
    """Subscribe ``stats.on_event`` to a session's events."""

    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    clusters: dict[str, ClusterStats] = field(default_factory=dict)
    management_s: float = 0.0   # starting, growing, resetting and stopping clusters
    cluster_starts: int = 0
    cluster_reuses: int = 0
    cluster_grows: int = 0
    nodes_started: int = 0
    node_crashes: int = 0
    fallbacks: list[dict] = field(default_factory=list)
    diagnoses: list[dict] = field(default_factory=list)
    leaks: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    retries: int = 0
    saved_logs: list[str] = field(default_factory=list)
    faults: list[dict] = field(default_factory=list)  # per class: the faults it injected
    workers: int = 1  # -j: worker processes that ran the tests
    # per class and node: ports it listened on that were not declared in node_ports
    undeclared_ports: list[dict] = field(default_factory=list)
    _pending: dict[str, float] = field(default_factory=dict)

    def on_event(self, event: Event) -> None:
        handler = getattr(self, "_on_" + event.kind, None)
        if handler:
            handler(event)

    def _on_cluster_started(self, e: Event) -> None:
        self.clusters[e.cluster] = ClusterStats(e.cluster, e.size, e.simulated, e.seconds,
                                                timings=dict(e.data.get("timings", {})),
                                                network=e.data.get("network", ""),
                                                network_reason=e.data.get("network_reason", ""))
        self.cluster_starts += 1
        self.nodes_started += e.size
        self.management_s += e.seconds

    def _on_cluster_reused(self, e: Event) -> None:
        self.cluster_reuses += 1
        self.management_s += e.seconds
        stats = self.clusters.get(e.cluster)
        if stats is None:  # kept by an earlier run
            stats = self.clusters[e.cluster] = ClusterStats(e.cluster, e.size,
                                                            reused_from_previous_run=True)
        stats.reuses += 1

    def _on_cluster_grown(self, e: Event) -> None:
        self.cluster_grows += 1
        self.management_s += e.seconds
        stats = self.clusters.get(e.cluster)
        if stats:
            self.nodes_started += e.size - stats.size
            stats.size = e.size
            stats.grows += 1

    def _on_cluster_stopped(self, e: Event) -> None:
        self.management_s += e.seconds
        if e.data.get("logs"):
            self.saved_logs.append(e.logs)
        if e.cluster in self.clusters:
            self.clusters[e.cluster].stopped = True
            self.clusters[e.cluster].nodes = list(e.data.get("nodes", []))

    def _on_cluster_kept(self, e: Event) -> None:
        if e.cluster in self.clusters:
            self.clusters[e.cluster].kept = True

    def _on_node_crashed(self, e: Event) -> None:
        self.node_crashes += 1

    def _on_node_replaced(self, e: Event) -> None:
        stats = self.clusters.get(e.cluster)
        if stats:
            stats.nodes_replaced += 1

    def _on_cluster_retry(self, e: Event) -> None:
        self.retries += 1

    def _on_cluster_start_failed(self, e: Event) -> None:
        self._add_diagnosis(e.error)

    def _on_fallback(self, e: Event) -> None:
        self.fallbacks.append({"class": e.cls, "policy": e.policy, "detail": e.detail})
        self._add_diagnosis(e.error)

    def _on_leak(self, e: Event) -> None:
        self.leaks.append({"cluster": e.cluster, "what": e.what, "detail": e.detail,
                           "pids": list(e.data.get("pids", []))})

    def _on_diagnosis(self, e: Event) -> None:
        if e.diagnosis.to_dict() not in self.diagnoses:
            self.diagnoses.append(e.diagnosis.to_dict())

    def _on_class_finished(self, e: Event) -> None:
        if e.data.get("faults"):
            self.faults.append({"class": e.cls, "cluster": e.cluster, "faults": e.faults})
        for node, ports in (e.data.get("undeclared_ports") or {}).items():
            self.undeclared_ports.append({"class": e.cls, "cluster": e.cluster,
                                          "node": node, "ports": list(ports)})

    def _on_warning(self, e: Event) -> None:
        self.warnings.append(e.message)

    def _add_diagnosis(self, error) -> None:
        diagnosis = getattr(error, "diagnosis", None)
        if diagnosis is not None and diagnosis.to_dict() not in self.diagnoses:
            self.diagnoses.append(diagnosis.to_dict())

    @property
    def duration_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started
