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
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from disttest import coverage_support, resources
from disttest.clusters.cluster import Cluster
from disttest.clusters.entry import Entry
from disttest.clusters import kept, network, teardown
from disttest.clusters.launcher import LocalLauncher
from disttest.clusters.logtail import LogTailer
from disttest.clusters.node import Node
from disttest.clusters.parallel import in_parallel
from disttest.clusters.ports import PortAllocator
from disttest.clusters.registry import Registry, mark_owner
from disttest.clusters.simulated import SimulatedLauncher
from disttest.errors import ClusterStartError, DisttestError
from disttest.events import EventBus
from disttest.requirements import Requirement, with_configured_hosts

# Failures that another attempt cannot fix.
_NOT_RETRIED = {"spawn-executable", "spawn-cwd", "spawn-environment", "resources", "config", "netns-unavailable",
                "ssh-auth"}


class ClusterPool:
    """Owns every cluster of a process; see the module docstring."""

    def __init__(self, config, events: EventBus | None = None, launcher=None,
                 allocator: PortAllocator | None = None, name_prefix: str = "") -> None:
        self.config = config
        self.name_prefix = name_prefix  # before every cluster id: "w2-" in -j worker 2
        self.events = events or EventBus()
        self.launchers = {False: launcher or LocalLauncher(), True: SimulatedLauncher()}
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

    # -- starting ---------------------------------------------------------------
    def start_new(self, requirement: Requirement) -> Entry:
        """Start a new group of nodes for ``requirement`` (retried with backoff), not lent."""
        attempts = 1 + max(0, int(self.config.startup_retries))
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(requirement)
            except ClusterStartError as exc:
                kind = exc.diagnosis.kind
                if attempt == attempts or kind in _NOT_RETRIED:
                    self._failures[requirement.key] = (requirement.size, exc)
                    self.events.emit("cluster_start_failed", requirement=requirement.describe(),
                                     error=exc, attempts=attempt)
                    raise
                delay = self.config.retry_backoff * 2 ** (attempt - 1)
                delay *= 1 + random.random() * 0.25  # jitter: concurrent runs spread out
                self.events.emit("cluster_retry", requirement=requirement.describe(),
                                 attempt=attempt, of=attempts, delay=delay,
                                 reason=exc.diagnosis.problem)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _start_once(self, requirement: Requirement) -> Entry:
        self._count += 1
        cluster_id = f"{self.name_prefix}c{self._count}-{secrets.token_hex(2)}"
        self.events.emit("cluster_starting", cluster=cluster_id, size=requirement.size,
                         requirement=requirement.describe())
        started = time.perf_counter()
        tmpdir = Path(tempfile.mkdtemp(prefix=f"disttest-{cluster_id}-"))
        self.tmpdirs.add(tmpdir)
        mark_owner(tmpdir)
        ports: list[int] = []
        try:
            if requirement.simulated:
                if requirement.env:
                    self.events.emit("warning", message=f"cluster {cluster_id}: simulated nodes "
                                     "share the test process's environment; node_env is not applied")
            elif not requirement.hosts:  # nodes on SSH hosts do not load this machine
                self._check_fits(requirement.size)
            ports = self.allocator.allocate(requirement.size * len(requirement.ports))
            entry = Entry(cluster_id, requirement, [], tmpdir, ports, requirement.simulated)
            entry.faults = network.make(requirement.network, cluster_id, self.host, self.events)
            entry.nodes = self._spawn_nodes(entry, secrets.token_hex(32), 0, requirement.size,
                                            ports)
            spawned = time.perf_counter()
            in_parallel(lambda n: n.ping(timeout=self.config.startup_timeout), entry.nodes)
        except BaseException:
            self.allocator.release(ports)
            if "entry" in locals() and entry.faults is not None:
                entry.faults.close()
            for node in (entry.nodes if "entry" in locals() else []):
                node.stop_process(1.0)
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        done = time.perf_counter()
        entry.startup_s = done - started
        split = getattr(self._launcher(entry), "last_timings", None) or {}
        entry.timings = {**(split or {"spawn_ready_s": spawned - started}),
                         "health_s": done - spawned}
        entry.lent_shape = (requirement.size, tuple(sorted(requirement.ports)))
        self.entries.append(entry)
        self.events.emit("cluster_started", cluster=cluster_id, size=requirement.size,
                         seconds=entry.startup_s, simulated=entry.simulated,
                         timings=dict(entry.timings),
                         pids=[n.pid for n in entry.nodes],
                         network=entry.faults.mode if entry.faults is not None else "direct",
                         network_reason=(entry.faults.mode_reason
                                         if entry.faults is not None else "declared"))
        return entry

    def node_memory_estimate(self) -> int:
        """Resident memory of one node: measured on running nodes, else a typical figure."""
        sizes = [u[0] for e in self.entries if not e.simulated and not e.hosts for n in e.nodes
                 if n.alive and (u := resources.usage(n.pid))] if self.entries else []
        return int(sum(sizes) / len(sizes)) if sizes else 24 * 1024 * 1024

    def _check_fits(self, count: int) -> None:
        from disttest.environment import fit_cluster, machine_resources

        problem = fit_cluster(count, self.node_memory_estimate(), machine_resources())
        if problem:
            raise ClusterStartError(
                f"{count} more node(s) would not fit on this machine", problem,
                ["lower the cluster size, or set min_cluster_size and use the 'reduce' fallback",
                 "close other memory-hungry programs, or use --simulate"],
                kind="resources")

    def _spawn_nodes(self, entry: Entry, key: str, first: int, count: int,
                     ports: list[int]) -> list[Node]:
        names = sorted(entry.port_names)
        base = {"cluster_id": entry.id, "key": key, "host": self.host, "cwd": os.getcwd(),
                "sys_path": [os.path.abspath(p) if p else os.getcwd() for p in sys.path],
                "env": dict(entry.env), "main_path": _main_path()}
        launcher = self._launcher(entry)
        remote = getattr(launcher, "address", None)  # SSH: each node binds its host's address
        if remote is not None and coverage_support.measured():
            self.events.emit("warning", message=f"cluster {entry.id}: nodes on SSH hosts are "
                             "not measured by coverage (only local nodes are)")
        nodes = []
        for i in range(count):
            index = first + i
            node_ports = dict(zip(names, ports[i * len(names):(i + 1) * len(names)]))
            boot = dict(base, name=f"node-{index}", index=index, ports=node_ports)
            if remote is not None:
                boot["host"] = remote(index)
            if entry.faults is not None:
                boot.update(network.node_boot(entry.faults, boot["name"]))
            node = Node(boot=boot, launcher=launcher, log_path=entry.tmpdir / f"node-{index}.log",
                        call_timeout=self.config.call_timeout,
                        startup_timeout=self.config.startup_timeout, events=self.events,
                        dial=getattr(entry.faults, "dial", None))
            node.debug = self.config.verbose_cluster_logs
            nodes.append(node)
        peers = network.peer_map(entry.faults, entry.nodes + nodes)
        for node in nodes:
            node.boot["peers"] = peers[node.name]
        processes = launcher.start([n.boot for n in nodes], [n.log_path for n in nodes],
                                   self.config.startup_timeout)
        for node, process in zip(nodes, processes):
            node.use_process(process)
            if process.pid:
                self.started_pids.add(getattr(process, "local_pid", process.pid))
        return nodes

    def _launcher(self, entry: Entry):
        """Local processes, simulated threads, or the SSH launcher of the entry's hosts."""
        if entry.simulated or not entry.hosts:
            return self.launchers[entry.simulated]
        if entry.network != "direct":
            raise ClusterStartError(
                f"network = {entry.network!r} cannot be used with nodes on SSH hosts",
                "the fault proxies and namespaces run on this machine; nodes on other "
                "hosts reach each other directly",
                ['use network = "direct" for this cluster, or run its nodes locally'],
                kind="config")
        if entry.hosts not in self.launchers:
            from disttest.clusters.ssh import SSHLauncher

            self.launchers[entry.hosts] = SSHLauncher(
                entry.hosts, getattr(self.config, "ssh_options", ()),
                getattr(self.config, "remote_python", None))
        return self.launchers[entry.hosts]

    def _grow(self, entry: Entry, size: int) -> None:
        count = size - entry.size
        if not entry.simulated and not entry.hosts:
            self._check_fits(count)
        names = sorted(entry.port_names)
        ports = self.allocator.allocate(count * len(names))
        try:
            key = entry.nodes[0].boot["key"]
            new = self._spawn_nodes(entry, key, entry.size, count, ports)
        except BaseException:
            self.allocator.release(ports)
            raise
        entry.nodes.extend(new)
        entry.ports.extend(ports)
        entry.lent_shape = None

    def _add_ports(self, entry: Entry, names: list[str]) -> None:
        ports = self.allocator.allocate(len(names) * entry.size)
        entry.ports.extend(ports)
        for i, node in enumerate(entry.nodes):
            node.boot["ports"].update(zip(names, ports[i * len(names):(i + 1) * len(names)]))
        entry.port_names.update(names)
        entry.lent_shape = None


def _main_path() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return os.path.abspath(path) if path else None


def _usable_host(host: str, events: EventBus) -> str:
    try:
        from disttest.environment import resolve_host
    except ImportError:  # pragma: no cover
        return host
    address, warning = resolve_host(host)
    if warning:
        events.emit("warning", message=warning)
    return address
