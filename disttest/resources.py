"""Who holds what: ports, processes and memory, seen through psutil.

Used for diagnoses (which process holds a port) and accounting (memory and
CPU of nodes). Controller side only.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def describe_process(pid: int) -> str:
    import psutil

    try:
        proc = psutil.Process(pid)
        cmd = " ".join(proc.cmdline()[:4]) or proc.name()
        return f"pid {pid} ({cmd[:80]})"
    except (psutil.Error, OSError):
        return f"pid {pid}"


def port_holders(low: int, high: int, lock_dir: Path | None = None) -> list[str]:
    """One line per port in [low, high] that is listened on or locked by a run."""
    import psutil

    found: dict[int, str] = {}
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and low <= conn.laddr.port <= high and conn.status == psutil.CONN_LISTEN:
                who = describe_process(conn.pid) if conn.pid else "another user's process"
                found.setdefault(conn.laddr.port, f"{conn.laddr.port} listened on by {who}")
    except (psutil.Error, OSError):
        pass
    if lock_dir is not None and Path(lock_dir).is_dir():
        from disttest.clusters import lockfiles

        for path in Path(lock_dir).glob("*.lock"):
            if not path.stem.isdigit() or not low <= int(path.stem) <= high:
                continue
            port = int(path.stem)
            if port in found or not lockfiles.is_held(path):
                continue
            owner, pid = lockfiles.holder(path)
            if owner is not None and owner != os.getuid():
                # Only a file of ours is trusted to name its holder.
                found[port] = f"{port} locked by another user's process (uid {owner})"
            elif pid and psutil.pid_exists(pid):
                found[port] = f"{port} locked by disttest run {describe_process(pid)}"
            else:
                found[port] = f"{port} locked by a process of this user"
    return [found[p] for p in sorted(found)]


def holder_of(host: str, port: int) -> str | None:
    """The process listening on ``port`` (any address), if it can be seen."""
    lines = port_holders(port, port)
    return lines[0] if lines else None


def listening_ports(pids) -> set[int]:
    """TCP ports on which any of ``pids`` listens (those that can be seen)."""
    import psutil

    ports = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.Error, OSError):
            continue
        ports.update(c.laddr.port for c in connections
                     if c.status == psutil.CONN_LISTEN and c.laddr)
    return ports


def undeclared_ports(nodes) -> dict[str, list[int]]:
    """``{node name: ports}`` a node (or a process it started) listens on that
    disttest did not give it: neither its ``node_ports`` nor its control port."""
    found = {}
    for node in nodes:
        pid = node.local_pid
        if pid is None or not node.alive:
            continue
        known = set(node.ports.values()) | {node.control_port}
        extra = sorted(listening_ports([pid, *process_tree(pid)]) - known)
        if extra:
            found[node.name] = extra
    return found


def process_tree(pid: int) -> list[int]:
    """``pid``'s descendants (not ``pid`` itself); empty when it is gone."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except (psutil.Error, OSError):
        return []


def alive(pids) -> list[int]:
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except (psutil.Error, OSError):
            pass
    return out


def usage(pid: int) -> tuple[int, float] | None:
    """(resident memory in bytes, CPU seconds) of a live process."""
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            cpu = proc.cpu_times()
            return proc.memory_info().rss, cpu.user + cpu.system
    except (psutil.Error, OSError):
        return None


def kill_all(pids) -> None:
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def node_metrics(pid: int | None) -> dict | None:
    """Peak resident memory and CPU seconds of a live node process.

    On Linux the kernel keeps the peak itself (VmHWM), so reading it once
    before the node stops is exact and costs nothing while it runs; elsewhere
    the current resident size stands in for the peak.
    """
    if not pid:
        return None
    peak = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    measured = usage(pid)
    if measured is None:
        return None
    rss, cpu = measured
    return {"peak_rss_bytes": peak or rss, "cpu_s": round(cpu, 4)}


def wait_stopped(pid: int, timeout: float) -> None:
    """Wait until every thread of ``pid`` is stopped (where /proc shows it)."""
    deadline = time.monotonic() + timeout
    task_dir = f"/proc/{pid}/task"
    while time.monotonic() < deadline:
        try:
            states = []
            for tid in os.listdir(task_dir):
                with open(f"{task_dir}/{tid}/stat") as f:
                    states.append(f.read().rpartition(")")[2].split()[0])
        except OSError:  # no /proc (not Linux), or the process is gone
            return
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
