"""ClusterPool: the one way anything in disttest gets a cluster.

The runner, ``DistributedTestCase`` under a foreign runner, ``start_cluster``
and ``ClusterTestHelper`` all acquire here, so reuse, clean-up and accounting
are written once:

* ``acquire(requirement)`` lends an idle cluster of the same compatibility
  key (reset first, grown by adding nodes when it is too small, given more
  named ports when it lacks some) or starts one, all nodes in parallel, with
  retries and exponential backoff;
* ``release(cluster)`` makes it idle (fresh clusters, or every cluster with
  ``reuse_clusters = false``, are stopped instead);
* ``shutdown()`` stops everything; it runs at interpreter exit too.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from disttest import resources
from disttest.clusters.cluster import Cluster
from disttest.clusters.entry import Entry
from disttest.clusters import kept, network, teardown
from disttest.clusters.launcher import LocalLauncher
from disttest.clusters.logtail import LogTailer
from disttest.clusters.node import Node
from disttest.clusters.parallel import in_parallel
from disttest.clusters.ports import PortAllocator
from disttest.clusters.registry import Registry
from disttest.clusters.simulated import SimulatedLauncher
from disttest.clusters.starting import PoolStarting
from disttest.errors import ClusterStartError, DisttestError
from disttest.events import EventBus
from disttest.requirements import Requirement, with_configured_hosts

class ClusterPool(PoolStarting):
    """Owns every cluster of a process; see the module docstring."""

    def __init__(self, config, events: EventBus | None = None, launcher=None,
                 allocator: PortAllocator | None = None, name_prefix: str = "") -> None:
        self.config = config
        self.name_prefix = name_prefix  # before every cluster id: "w2-" in -j worker 2
        self.events = events or EventBus()
        self.launchers = {False: launcher or _local_launcher(config, self.events),
                          True: SimulatedLauncher()}
        self.host = _usable_host(config.host, self.events)
        self._registry = None
        self.allocator = allocator or PortAllocator(tuple(config.port_range), self.host,
                                                    reserved=self._reserved_ports)
        if self.allocator.lock_dir_note:
            self.events.emit("warning", message=self.allocator.lock_dir_note)
        self.entries: list[Entry] = []
        self._failures: dict[tuple, tuple[int, ClusterStartError]] = {}
        self.started_pids: set[int] = set()   # every node process this pool started
        self.tmpdirs: set[Path] = set()       # every temporary directory it made
        self.kept_ids: set[str] = set()
        self.run_id = time.strftime("run-%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.saved_logs: list[Path] = []
        self.kept_pids: set[int] = set()
        self.kept_dirs: set[Path] = set()
        self.events.subscribe(self._track)
        self.log_tailer = LogTailer(self) if config.verbose_cluster_logs else None
        self._lock = threading.RLock()
        self._count = 0
        self._closed = False

    # -- public ---------------------------------------------------------------
    def acquire(self, requirement: Requirement) -> Cluster:
        """A healthy cluster that satisfies ``requirement``, lent to the caller."""
        requirement = with_configured_hosts(requirement, self.config)
        with self._lock:
            if self._closed:
                raise DisttestError("the cluster pool is shut down", kind="pool-closed")
            failed = self._failures.get(requirement.key)
            if failed and failed[0] <= requirement.size:
                raise failed[1]
            entry = None
            if self.config.reuse_clusters and not requirement.fresh:
                entry = self._find_idle(requirement) or (
                    None if requirement.hosts else kept.adopt(self, requirement))
            if entry is None:
                entry = self.start_new(requirement)
            else:
                self._prepare(entry, requirement)
            entry.busy = True
            return self._lend(entry, requirement)

    def release(self, cluster: Cluster) -> None:
        """Give a lent cluster back; it is reset before its next use."""
        with self._lock:
            entry = self._entry_of(cluster)
            if entry is None:
                return
            entry.busy = False
            entry.dirty = True
            if entry.fresh or not self.config.reuse_clusters:
                self._stop_entries([entry])

    def stop(self, cluster: Cluster) -> None:
        """Stop a cluster now; it is never lent again."""
        with self._lock:
            entry = self._entry_of(cluster)
            if entry is not None:
                self._stop_entries([entry])

    def _entry_of(self, cluster: Cluster) -> Entry | None:
        return next((e for e in self.entries if e.id == cluster.id), None)

    def _track(self, event) -> None:
        if event.kind == "node_restarted" and event.pid:
            # A node on an SSH host has its pid there: what runs here is its ssh client.
            process = next((n.process for e in self.entries for n in e.nodes
                            if n.name == event.node and n.pid == event.pid), None)
            self.started_pids.add(getattr(process, "local_pid", event.pid))

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.config.state_path(), note=lambda text: self.events.emit(
                "warning", message=text))
        return self._registry

    def _reserved_ports(self) -> set[int]:
        try:
            return self.registry.reserved_ports()
        except Exception:  # an unusable state directory must not stop port allocation
            return set()

    def keep(self, ttl: float, name: str | None = None, pinned: bool = False,
             only: list | None = None) -> list[str]:
        """Leave idle clusters running for later runs (see clusters/kept.py)."""
        with self._lock:
            entries = kept.keep(self, ttl, name, pinned, only)
            for entry in entries:
                self.kept_ids.add(entry.id)
                self.kept_pids.update(n.pid for n in entry.nodes)
                self.kept_dirs.add(entry.tmpdir)
            return [e.id for e in entries]

    def verify_cleanup(self) -> list[dict]:
        """After shutdown: what this pool started and did not keep must be gone."""
        return teardown.verify_cleanup(self)

    def _stop_entries(self, entries: list[Entry]) -> None:
        teardown.stop_entries(self, entries)

    def stop_idle(self, key: tuple) -> None:
        """Stop idle clusters of compatibility ``key`` (no later class needs them)."""
        with self._lock:
            self._stop_entries([e for e in self.entries if not e.busy and e.key == key
                                and not e.pinned])  # kept at shutdown

    def shutdown(self) -> None:
        """Stop every cluster this pool started; pinned kept clusters are kept again."""
        if self.log_tailer is not None:
            self.log_tailer.stop()
        with self._lock:
            for entry in [e for e in self.entries if e.pinned and not e.busy]:
                self.keep(entry.kept_ttl, only=[entry])
            self._closed = True
            self._stop_entries(list(self.entries))
            self.allocator.release_all()
            for launcher in self.launchers.values():
                getattr(launcher, "close", lambda: None)()

    def reopen(self) -> None:
        with self._lock:
            self._closed = False

    # -- finding and preparing ----------------------------------------------
    def _find_idle(self, requirement: Requirement) -> Entry | None:
        idle = [e for e in self.entries if not e.busy and not e.fresh and e.key == requirement.key]
        big_enough = [e for e in idle if e.size >= requirement.size]
        if big_enough:
            return min(big_enough, key=lambda e: e.size)
        return max(idle, key=lambda e: e.size, default=None)

    def _prepare(self, entry: Entry, requirement: Requirement) -> None:
        started = time.perf_counter()
        if entry.dirty:
            self._reset(entry)
        grown = requirement.size > entry.size
        if grown:
            self.events.emit("cluster_growing", cluster=entry.id, size=entry.size,
                             to=requirement.size)
            self._grow(entry, requirement.size)
        missing = set(requirement.ports) - entry.port_names
        if missing:
            self._add_ports(entry, sorted(missing))
        seconds = time.perf_counter() - started
        if grown:
            entry.grows += 1
            self.events.emit("cluster_grown", cluster=entry.id, size=entry.size, seconds=seconds)
        else:
            self.events.emit("cluster_reused", cluster=entry.id, size=entry.size,
                             seconds=seconds, previous_run=entry.reused_from_previous_run)

    def _reset(self, entry: Entry) -> None:
        self.events.emit("cluster_resetting", cluster=entry.id)
        started = time.perf_counter()
        if entry.faults is not None:
            entry.faults.heal()  # the next class gets a clean network
        timeout = self.config.cleanup_timeout

        def reset_node(node: Node) -> str | None:
            problems: list[str] = []
            if node.alive:
                node.resume()
                try:
                    problems, busy = node.reset(timeout)
                    # The controller can see who holds a port; the node cannot (stdlib only).
                    problems += [f"port {port} is held by {holder}" for port in busy
                                 if (holder := resources.holder_of(node.host, port))]
                except DisttestError as exc:
                    problems = [str(exc).splitlines()[0]]
            else:
                problems = ["the node was not running"]
            if problems:
                if node.alive:
                    node.kill()
                node.empty_dir()  # the next user finds it empty, as a reset leaves it
                node.restart()
                self.events.emit("node_replaced", cluster=entry.id, node=node.name,
                                 reasons=problems)
            return None

        in_parallel(reset_node, entry.nodes)
        entry.dirty = False
        self.events.emit("cluster_reset", cluster=entry.id,
                         seconds=time.perf_counter() - started)

    def _lend(self, entry: Entry, requirement: Requirement) -> Cluster:
        nodes = entry.nodes[:requirement.size]
        for node in entry.nodes:
            node.lent()  # counters per holder, not carried over from the last one
        shape = (len(nodes), tuple(sorted(entry.port_names)))
        if entry.faults is not None:
            entry.fault_mark = len(entry.faults.history())
        if entry.lent_shape != shape:
            peers = network.peer_map(entry.faults, nodes)
            in_parallel(lambda n: n.configure({"ports": n.ports, "peers": peers[n.name]}),
                           nodes)
            entry.lent_shape = shape
        mode = entry.faults.mode if entry.faults is not None else entry.network
        return Cluster(entry.id, nodes, pool=self, entry=entry, simulated=entry.simulated,
                       network=mode, startup_timeout=self.config.startup_timeout)


def _usable_host(host: str, events: EventBus) -> str:
    try:
        from disttest.environment import resolve_host
    except ImportError:  # pragma: no cover
        return host
    address, warning = resolve_host(host)
    if warning:
        events.emit("warning", message=warning)
    return address


def _local_launcher(config, events: EventBus):
    """Spawned nodes, or nodes forked from a template (``node_start``)."""
    if config.node_start != "template":
        return LocalLauncher()
    import sys

    from disttest.clusters.preload_auto import LearnedPreload, project_dirs
    from disttest.clusters.template import TemplateLauncher
    from disttest.durations import durations_path

    def note(text: str) -> None:
        events.emit("warning", message=text)

    # Read only when a template preloads "auto" (the setting or a class's attribute).
    learned = LearnedPreload(lambda: durations_path(config), sys.executable,
                             project_dirs(config), note)
    return TemplateLauncher(preload=config.preload, timeout=config.startup_timeout,
                            note=note, events=events, learned=learned)
