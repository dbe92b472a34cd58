"""Entry: the pool's record of one group of node processes.

Every field is declared here (``__slots__``: nothing can be added from
outside). The pool, keeping/adopting (kept.py) and stopping (teardown.py)
read and write these fields; a test sees the group only through the
``Cluster`` views the pool lends.
"""
from __future__ import annotations

import time
from pathlib import Path

from disttest.clusters.node import Node
from disttest.requirements import Requirement


class Entry:
    """A pooled group of node processes and what it has done."""

    __slots__ = ("id", "key", "network", "env", "preload", "port_names", "fresh", "hosts", "nodes",
                 "tmpdir", "ports", "simulated", "busy", "dirty", "lent_shape", "created",
                 "startup_s", "timings", "grows", "reused_from_previous_run", "faults",
                 "fault_mark", "adopted", "pinned", "kept_name", "kept_ttl")

    def __init__(self, cluster_id: str, requirement: Requirement, nodes: list[Node],
                 tmpdir: Path, ports: list[int], simulated: bool) -> None:
        self.id = cluster_id
        self.key = requirement.key
        self.network = requirement.network
        self.env = requirement.env
        self.preload = requirement.preload
        self.port_names = set(requirement.ports)
        self.fresh = requirement.fresh
        self.hosts = requirement.hosts  # () for local processes
        self.nodes = nodes
        self.tmpdir = tmpdir
        self.ports = list(ports)        # the port locks this process holds for it
        self.simulated = simulated
        self.busy = False               # lent to a test right now
        self.dirty = False              # used since its last reset
        self.lent_shape: tuple | None = None  # (size, port names) the nodes were configured for
        self.created = time.time()
        self.startup_s = 0.0
        self.timings: dict[str, float] = {}
        self.grows = 0
        self.reused_from_previous_run = False
        self.faults = None              # the network that injects faults (proxy/netns modes)
        self.fault_mark = 0             # len(faults.history()) when last lent
        # Kept clusters (clusters/kept.py):
        self.adopted = False            # kept by an earlier run and adopted by this one
        self.pinned = False             # made by `cluster start`: kept again after every run
        self.kept_name: str | None = None  # the name it was kept under (cluster start --name)
        self.kept_ttl = 600.0           # its idle TTL when adopted

    @property
    def size(self) -> int:
        return len(self.nodes)

    def fault_history(self) -> list[dict]:
        """The faults injected since the group was last lent."""
        if self.faults is None:
            return []
        return self.faults.history()[self.fault_mark:]
