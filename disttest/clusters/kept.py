"""Keeping clusters for the next run, and adopting them in it.

Keeping: each idle node is told to ``detach`` (stop ending with the
controller, take over its own port locks, end itself after ``ttl`` idle
seconds), the port locks are handed over without removing their files, and
a record is written to the registry. The cluster's temporary directory (the
node logs) stays with it.

Adopting: a record that matches the requirement, the interpreter and the
project is verified node by node (alive, answers the key, same pid) and
reset before use; a record that fails any check is stale and removed, its
leftovers stopped, with a note.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from disttest.clusters.entry import Entry
from disttest.clusters.node import Node
from disttest.clusters.registry import AdoptedProcess, Registry, pid_alive, same_process, start_time
from disttest.errors import DisttestError


def project_of(config) -> str:
    return str(getattr(config, "project_root", None) or os.getcwd())


def keep(pool, ttl: float, name: str | None = None, pinned: bool = False,
         only: list | None = None) -> list:
    """Detach idle real clusters of ``pool`` (every one, or ``only`` these).

    A ``pinned`` cluster (made by ``cluster start``) is kept again at the end
    of every run that uses it, until ``cluster stop``. Returns the entries kept.
    """
    registry: Registry = pool.registry
    kept = []
    problem = registry.writable_problem()
    if problem:  # checked before any node is told to outlive this run
        pool.events.emit("warning", message=f"clusters are not kept: {problem}; "
                         "set state_dir (DISTTEST_STATE_DIR) to a writable directory")
        return kept
    candidates = only if only is not None else pool.entries
    for entry in [e for e in candidates if not e.busy and not e.fresh and not e.simulated]:
        if entry.hosts or entry.faults is not None:
            # SSH nodes live as long as their sessions; proxies and namespaces
            # belong to this process: none of them can outlive the run.
            why = "runs on SSH hosts" if entry.hosts else f"uses network {entry.network!r}"
            pool.events.emit("warning", message=f"cluster {entry.id} {why} and is not kept: "
                             "its nodes end with this run")
            continue
        record_path = registry.path(entry.id)
        try:
            for node in entry.nodes:
                if not node.alive:
                    node.restart()
                # Each node takes over the locks of its own ports only: a lock
                # is held by one process, and a node that waited for a peer's
                # lock would hold none of its own.
                lock_paths = [str(pool.allocator.path(port)) for port in node.ports.values()
                              if port in entry.ports]
                node.detach(ttl, lock_paths, str(record_path))
        except DisttestError as error:
            pool.events.emit("warning", message=f"cluster {entry.id} could not be kept: "
                             f"{error.diagnosis.problem}")
            continue
        entry.pinned = pinned or entry.pinned
        with registry.locked():
            registry.save(_record(pool, entry, ttl, name))
        pool.allocator.handover(entry.ports)
        entry.ports = []
        pool.entries.remove(entry)
        for node in entry.nodes:
            node.drop_connections()
            if node.process is not None:
                node.process.close_pipes()
        pool.events.emit("cluster_kept", cluster=entry.id, ttl=ttl, record=str(record_path))
        kept.append(entry)
    return kept


def _record(pool, entry, ttl: float, name: str | None) -> dict:
    first = entry.nodes[0].boot
    return {
        # A cluster kept again keeps the name it was given (cluster start --name).
        "id": entry.id, "name": name or entry.kept_name or entry.id,
        "created": entry.created,
        "last_used": time.time(), "ttl": ttl, "python": sys.executable,
        "project": project_of(pool.config), "network": entry.network,
        "env": [list(kv) for kv in entry.env], "port_names": sorted(entry.port_names),
        "key": first["key"], "host": first["host"], "tmpdir": str(entry.tmpdir),
        "owner_pid": None, "pinned": entry.pinned,
        # The kernel's start time with the pid: what proves, before anything
        # signals a pid from this record, that it is still this node.
        "nodes": [{"name": n.name, "index": n.index, "pid": n.pid, "start_time": start_time(n.pid),
                   "control_port": n.process.control_port, "ports": n.ports,
                   "log_path": str(n.log_path)} for n in entry.nodes],
    }


def adopt(pool, requirement):
    """A verified, kept cluster for ``requirement``, or None.

    Check, verify and save happen under the registry's lock: of concurrent
    runs, exactly one takes a kept cluster, and the others see its owner.
    """
    if requirement.simulated:
        return None
    with pool.registry.locked() as locked:  # False: the state directory is read-only
        return _adopt(pool, requirement) if locked else None


def _adopt(pool, requirement):
    for path, record in list(pool.registry.records()):
        if (record.get("python") != sys.executable or record.get("project") != project_of(pool.config)
                or record.get("network") != requirement.network
                or tuple(map(tuple, record.get("env", []))) != requirement.env):
            continue
        owner = record.get("owner_pid")
        if owner and owner != os.getpid() and pid_alive(owner):
            continue  # another run is using it right now
        try:
            nodes = _verify(pool, record)
        except DisttestError as error:
            discard(pool, record, error.diagnosis.problem)
            continue
        req = requirement.with_size(len(nodes))
        entry = Entry(record["id"], req, nodes, Path(record["tmpdir"]), [], False)
        entry.port_names = set(record["port_names"])
        entry.created = record.get("created", time.time())
        entry.dirty = True
        entry.adopted = True
        entry.reused_from_previous_run = True
        entry.kept_name = record.get("name")
        entry.pinned = bool(record.get("pinned"))
        entry.kept_ttl = float(record.get("ttl") or 600.0)
        record["owner_pid"] = os.getpid()
        pool.registry.save(record)
        pool.entries.append(entry)
        return entry
    return None


def _verify(pool, record: dict) -> list[Node]:
    nodes = []
    base = {"cluster_id": record["id"], "key": record["key"], "host": record["host"],
            "cwd": os.getcwd(), "sys_path": list(sys.path), "env": dict(map(tuple, record["env"])),
            "main_path": None}
    for info in record["nodes"]:
        if not same_process(info["pid"], info.get("start_time")):
            raise DisttestError(f"node {info['name']} (pid {info['pid']}) is gone", kind="stale")
        boot = dict(base, name=info["name"], index=info["index"], ports=dict(info["ports"]))
        node = Node(boot=boot, launcher=pool.launchers[False], log_path=Path(info["log_path"]),
                    call_timeout=pool.config.call_timeout,
                    startup_timeout=pool.config.startup_timeout, events=pool.events)
        node.use_process(AdoptedProcess(info["pid"], info["control_port"], Path(info["log_path"]),
                                        info.get("start_time")))
        try:
            pid = node.attach()
        except (DisttestError, OSError) as error:
            raise DisttestError(f"node {info['name']} does not answer the cluster key: "
                                f"{str(error).splitlines()[0]}", kind="stale") from None
        if pid != info["pid"]:
            raise DisttestError(f"node {info['name']} answers as pid {pid}, not {info['pid']}",
                                kind="stale")
        nodes.append(node)
    return nodes


def discard(pool, record: dict, reason: str) -> None:
    """Stop what is left of a stale kept cluster and remove its record."""
    stop_record(record)
    pool.registry.remove(record["id"])
    pool.events.emit("warning", message=f"removed stale kept cluster {record.get('name')}: {reason}")


def stop_record(record: dict, timeout: float = 5.0) -> list[int]:
    """Stop a kept cluster's node processes and remove its files; the pids stopped.

    Only a pid that is still the recorded node (same kernel start time) is
    signalled; all of them at once, so stopping takes one ``timeout``, not
    one per node.
    """
    procs = [AdoptedProcess(info["pid"], info["control_port"], Path(info["log_path"]),
                            info.get("start_time")) for info in record["nodes"]]
    procs = [proc for proc in procs if proc.alive()]
    for proc in procs:
        proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        if proc.wait(max(0.0, deadline - time.monotonic())) is None:
            proc.signal(signal.SIGKILL)
    for proc in procs:
        proc.wait(5.0)
    stopped = [proc.pid for proc in procs]
    for info in record["nodes"]:
        for port in info["ports"].values():
            _remove_free_lock(port, info["pid"] if info["pid"] in stopped else None)
    tmpdir = record.get("tmpdir")
    if tmpdir and Path(tmpdir).name.startswith("disttest-"):
        shutil.rmtree(tmpdir, ignore_errors=True)
    return stopped


def _remove_free_lock(port: int, pid: int | None = None, wait: float = 2.0) -> None:
    """Remove ``port``'s lock file unless someone holds it.

    A node ``pid`` that was just stopped may hold its lock a moment longer: it
    shows as ended (a zombie) as soon as its main thread exits, and its files
    are closed only when its last thread has.
    """
    from disttest.clusters import lockfiles
    from disttest.clusters.ports import PortAllocator

    allocator = PortAllocator((port, port))
    deadline = time.monotonic() + wait
    while True:
        if allocator.remove_if_free(port):  # nobody held it: the file was a leftover
            return
        owner, holder = lockfiles.holder(allocator.path(port))
        if pid is None or holder != pid or time.monotonic() >= deadline:
            return  # removed meanwhile, or held by someone else: theirs
        time.sleep(0.01)
