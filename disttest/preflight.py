"""``python -m disttest preflight``: can clusters start here, and if not, why.

Each check gives a status (ok, warn, fail), what it found, and for anything
not ok the fix. Exit status 0 when nothing failed, 1 when a check failed,
2 for a configuration error.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
from dataclasses import asdict, dataclass

from disttest.environment import format_bytes, machine_resources, resolve_host


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _node_check(config) -> tuple[Check, int | None]:
    from disttest.clusters.pool import ClusterPool
    from disttest.errors import DisttestError
    from disttest.requirements import Requirement
    from disttest import resources

    pool = ClusterPool(config)
    try:
        cluster = pool.acquire(Requirement(1, fresh=True))
        rtt = cluster[0].ping()
        rss = (resources.usage(cluster[0].pid) or (None, None))[0]
        return Check("node", "ok", f"{sys.executable} started a node that answered in "
                     f"{rtt * 1000:.1f} ms"), rss
    except DisttestError as error:
        d = error.diagnosis
        return Check("node", "fail", f"{d.problem}: {d.cause}".strip(": "),
                     d.steps[0] if d.steps else ""), None
    finally:
        pool.shutdown()


def _ports_check(config, address: str) -> Check:
    from disttest.clusters import lockfiles
    from disttest.clusters.ports import PortAllocator, default_lock_dir, port_is_free
    from disttest.resources import port_holders

    low, high = config.port_range
    lock_dir = default_lock_dir()
    # The resolved address, as the pool uses: a host name would be looked up
    # once per port, and one that does not resolve would make every port look taken.
    allocator = PortAllocator((low, high), address, lock_dir=lock_dir)
    # Only a port with a lock file can be held by a run; trying those alone (rather
    # than locking every port of the range) keeps this check fast and leaves the
    # shared lock directory alone.
    locked = {port for port, path in _lock_files(lock_dir, low, high) if lockfiles.is_held(path)}
    free = sum(1 for port in allocator.candidates()
               if port not in locked and port_is_free(address, port))
    needed = config.max_cluster_size * 2
    holders = port_holders(low, high, lock_dir)
    detail = f"{free} free port(s) in port_range {low}-{high}"
    if holders:
        detail += f"; in use: {'; '.join(holders[:5])}" + (" ..." if len(holders) > 5 else "")
    if free < needed:
        return Check("ports", "fail", detail + f"; at least {needed} wanted "
                     f"(2 per node of max_cluster_size {config.max_cluster_size})",
                     f'widen port_range, e.g. port_range = "{low}-{min(65535, high + 2000)}", '
                     "or run: python -m disttest cluster clean")
    ephemeral = _ephemeral_ports()
    if ephemeral and low <= ephemeral[1] and high >= ephemeral[0]:
        return Check("ports", "warn", detail + f"; it overlaps the kernel's ephemeral ports "
                     f"{ephemeral[0]}-{ephemeral[1]}, which any outgoing connection may take "
                     "between a node's port being chosen and the node listening on it",
                     f'choose a port_range outside {ephemeral[0]}-{ephemeral[1]}, e.g. the '
                     'default "20000-29999"')
    return Check("ports", "ok", detail)


def _ephemeral_ports() -> tuple[int, int] | None:
    """The kernel's range of ports for outgoing connections (Linux), or None."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
    except (OSError, ValueError):
        return None
    return low, high


def _lock_files(lock_dir, low: int, high: int):
    for path in lock_dir.glob("*.lock"):
        if path.stem.isdigit() and low <= int(path.stem) <= high:
            yield int(path.stem), path


def run_checks(config) -> list[Check]:
    checks = []
    address, warning = resolve_host(config.host)
    checks.append(Check("host", "warn" if warning else "ok",
                        warning or f"{config.host} is usable ({address})",
                        "set host to an IP address, e.g. host = \"127.0.0.1\"" if warning else ""))
    node, rss = _node_check(config)
    checks.append(node)
    checks.append(_ports_check(config, address))

    machine = machine_resources()
    per_node = rss or 24 * 1024 * 1024
    need = per_node * config.max_cluster_size
    status = "ok" if need < machine.available_memory * 0.8 else "fail"
    checks.append(Check("memory", status,
                        f"{format_bytes(machine.available_memory)} available; "
                        f"{config.max_cluster_size} node(s) of ~{format_bytes(per_node)} "
                        f"need ~{format_bytes(need)}",
                        "" if status == "ok" else "lower max_cluster_size or free memory"))
    checks.append(Check("cpus", "ok" if machine.cpus >= 2 else "warn",
                        f"{machine.cpus} CPU(s); idle nodes need little CPU, busy ones share them",
                        "" if machine.cpus >= 2 else "expect slower clusters on one CPU"))

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 256 + 16 * config.max_cluster_size
    ok = soft == resource.RLIM_INFINITY or soft >= wanted
    checks.append(Check("open files", "ok" if ok else "fail", f"limit {soft}, {wanted} wanted",
                        "" if ok else f"raise it: ulimit -n {max(4096, wanted)}"))
    if hasattr(resource, "RLIMIT_NPROC"):
        soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
        ok = soft == resource.RLIM_INFINITY or soft >= 64 + config.max_cluster_size * 4
        checks.append(Check("processes", "ok" if ok else "fail", f"limit {soft}",
                            "" if ok else "raise it: ulimit -u 4096"))

    try:
        state = config.state_path()
        with tempfile.NamedTemporaryFile(dir=state):
            pass
        checks.append(Check("state directory", "ok", f"{state} is writable"))
    except Exception as exc:  # any failure here is the finding itself
        # A DisttestError's text carries its own fix lines: show the problem only.
        diagnosis = getattr(exc, "diagnosis", None)
        checks.append(Check("state directory", "fail",
                            diagnosis.problem if diagnosis is not None else f"{exc}",
                            "set DISTTEST_STATE_DIR to a writable directory"))
    from disttest.clusters.netns import unavailable

    reason = unavailable()
    checks.append(Check("netns", "ok" if reason is None else "warn",
                        "network = \"netns\" is available" if reason is None else
                        f"network = \"netns\" is not available: {reason}",
                        "" if reason is None else
                        "use network = \"auto\" (userns or proxy), or run as root on Linux"))
    from disttest.clusters import network, userns

    reason = userns.unavailable()
    chosen, why = network.choose("auto")
    checks.append(Check("userns", "ok" if reason is None else "warn",
                        "network = \"userns\" is available" if reason is None else
                        f"network = \"userns\" is not available: {reason}",
                        "" if reason is None else
                        "network = \"auto\" uses the proxy here: faults apply only to "
                        "traffic sent to the addresses this_node.peers() gives"))
    checks.append(Check("auto", "ok", f"network = \"auto\" gives {chosen} ({why[6:]})"))
    checks.append(Check("ci", "ok", f"CI detected: {config.ci_provider}" if config.ci
                        else "not in CI (a developer machine)"))
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    pad = " " * (4 + 2 + width + 2)
    for c in checks:
        # A detail may hold several lines (a node's log, a command line with
        # newlines): they continue under it, so each check still starts a line.
        first, *rest = c.detail.splitlines() or [""]
        lines.append(f"{c.status.upper():<4}  {c.name:<{width}}  {first}")
        lines.extend(pad + line for line in rest)
        if c.fix:
            lines.append(f"{pad}fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append("preflight: all checks passed" if not failed else
                 f"preflight: {failed} check(s) failed")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import argparse

    from disttest.config import load_config

    parser = argparse.ArgumentParser(prog="python -m disttest preflight",
                                     description="Check that clusters can start here.",
                                     epilog="Exit status: 0 when no check failed, 1 when one "
                                            "did, 2 for a configuration error.")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    args = parser.parse_args(argv)
    checks = run_checks(load_config())
    if args.json:
        print(json.dumps({"ok": not any(c.status == "fail" for c in checks),
                          "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render(checks))
    return 1 if any(c.status == "fail" for c in checks) else 0
