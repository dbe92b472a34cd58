"""Starting nodes for the pool: new clusters (with retries), growth, more ports.

``PoolStarting`` is a base class of ``ClusterPool`` (pool.py): these methods
use the pool's configuration, allocator, launchers and accounting. Every
node of a start is spawned at once and health-checked together; a failed
start leaves nothing behind (ports, proxies, processes, directory).
"""
from __future__ import annotations

import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from disttest import coverage_support, resources
from disttest.clusters import network
from disttest.clusters.entry import Entry
from disttest.clusters.node import Node
from disttest.clusters.parallel import in_parallel
from disttest.clusters.registry import mark_owner
from disttest.errors import ClusterStartError
from disttest.requirements import Requirement

# Failures that another attempt cannot fix.
_NOT_RETRIED = {"spawn-executable", "spawn-cwd", "spawn-environment", "resources", "config", "netns-unavailable",
                "ssh-auth"}


class PoolStarting:
    """How ``ClusterPool`` starts and grows clusters (see the module docstring)."""

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
        entry: Entry | None = None
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
            if entry is not None:
                if entry.faults is not None:
                    entry.faults.close()
                for node in entry.nodes:
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
                "env": dict(entry.env), "main_path": _main_path(),
                "template_preload": list(entry.preload)}
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
            else:  # its own working directory and TMPDIR (a path of this machine)
                node_dir = entry.tmpdir / f"node-{index}"
                (node_dir / "tmp").mkdir(parents=True, exist_ok=True)
                boot["dir"] = str(node_dir)
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
