"""Facts about the machine disttest runs on: CI service, host address, resources.

Everything here answers a question about the environment and decides nothing:
:mod:`disttest.config` turns CI detection into a profile, the cluster layer
uses :func:`resolve_host` and :func:`fit_cluster` to pick an address and to
refuse a cluster that would not fit in memory. Only the standard library is
imported at module level; psutil is imported inside the function that needs it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
TYPE_CHECKING = False  # typing, socket and ipaddress cost milliseconds of every run's start
if TYPE_CHECKING:
    from typing import Mapping, Optional, Tuple

__all__ = [
    "CI_PROVIDERS",
    "FALSE_VALUES",
    "MachineResources",
    "detect_ci",
    "fit_cluster",
    "format_bytes",
    "machine_resources",
    "resolve_host",
]

# Environment variable -> CI service, most specific first: most services also
# set the generic ``CI`` variable, which therefore comes last.
CI_PROVIDERS: Mapping[str, str] = {
    "GITHUB_ACTIONS": "GitHub Actions",
    "GITLAB_CI": "GitLab CI",
    "JENKINS_URL": "Jenkins",
    "HUDSON_URL": "Jenkins",
    "BUILDKITE": "Buildkite",
    "CIRCLECI": "CircleCI",
    "TRAVIS": "Travis CI",
    "TF_BUILD": "Azure Pipelines",
    "TEAMCITY_VERSION": "TeamCity",
    "BITBUCKET_BUILD_NUMBER": "Bitbucket Pipelines",
    "APPVEYOR": "AppVeyor",
    "DRONE": "Drone",
    "CODEBUILD_BUILD_ID": "AWS CodeBuild",
    "CIRRUS_CI": "Cirrus CI",
    "SEMAPHORE": "Semaphore",
    "BITRISE_IO": "Bitrise",
    "HEROKU_TEST_RUN_ID": "Heroku CI",
    "CI": "CI",
}

#: Values that mean "not set" for a CI variable (compared case-insensitively).
FALSE_VALUES = frozenset({"", "0", "false", "no", "off"})


def detect_ci(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Return the display name of the CI service running us, or None.

    A variable counts when it is set to anything but an empty or false-looking
    value (``0``, ``false``, ``no``, ``off``), so ``CI=false`` turns detection off.
    """
    env = os.environ if environ is None else environ
    for variable, provider in CI_PROVIDERS.items():
        value = env.get(variable)
        if value is not None and value.strip().lower() not in FALSE_VALUES:
            return provider
    return None


def resolve_host(host: str) -> Tuple[str, Optional[str]]:
    """Turn ``host`` into an address nodes can bind to: ``(address, warning)``.

    IP literals come back unchanged. A name is resolved once, here, so every
    node binds to the same address (the first IPv4 one, else the first IPv6
    one). A name that does not resolve falls back to 127.0.0.1 with a warning
    instead of failing every cluster later with a less helpful error.
    """
    import ipaddress
    import socket

    literal = host.strip()
    if literal.startswith("[") and literal.endswith("]"):
        literal = literal[1:-1]
    try:
        return str(ipaddress.ip_address(literal)), None
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(literal, None, 0, socket.SOCK_STREAM)
        error = "no address found"
    except (OSError, UnicodeError) as exc:
        infos, error = [], str(exc) or type(exc).__name__
    for family in (socket.AF_INET, socket.AF_INET6):
        for info in infos:
            if info[0] == family:
                return str(info[4][0]), None
    warning = (f"host {host!r} could not be resolved ({error}); falling back to "
               f"127.0.0.1. Set `host` to an IP address (for example host = "
               f"\"127.0.0.1\" in the configuration or DISTTEST_HOST=127.0.0.1) "
               f"to silence this warning.")
    return "127.0.0.1", warning


@dataclass(frozen=True)
class MachineResources:
    """CPUs usable by this process and memory in bytes."""

    cpus: int
    total_memory: int
    available_memory: int


def machine_resources() -> MachineResources:
    """Measure CPUs and memory, honouring CPU affinity and cgroup memory limits.

    Containers used by CI services often limit memory with a cgroup while
    psutil reports the host's memory, so the smaller of the two wins.
    """
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS and Windows
        cpus = os.cpu_count() or 1
    # /proc/meminfo is read directly where it exists: importing psutil costs
    # about 9 ms, and this runs before every cluster start.
    memory = _proc_meminfo()
    if memory is None:
        import psutil

        vm = psutil.virtual_memory()
        memory = (int(vm.total), int(vm.available))
    total, available = memory
    limit = _cgroup_memory_limit()
    if limit is not None and limit < total:
        used = _cgroup_memory_usage() or 0
        total, available = limit, max(0, min(available, limit - used))
    return MachineResources(cpus=max(1, cpus), total_memory=total,
                            available_memory=available)


def _proc_meminfo() -> Optional[Tuple[int, int]]:
    """(total, available) bytes from /proc/meminfo, or None where it is missing."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return (int(fields["MemTotal"].split()[0]) * 1024,
                int(fields["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError, UnicodeError):
        return None


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeError):
        return None
    return int(text) if text.isdigit() else None  # "max" means no limit


def _cgroup_memory_limit() -> Optional[int]:
    for path in ("/sys/fs/cgroup/memory.max",  # cgroup v2
                 "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # cgroup v1
        value = _read_int(path)
        if value is not None:
            return value
    return None


def _cgroup_memory_usage() -> Optional[int]:
    for path in ("/sys/fs/cgroup/memory.current",
                 "/sys/fs/cgroup/memory/memory.usage_in_bytes"):
        value = _read_int(path)
        if value is not None:
            return value
    return None


def fit_cluster(nodes_needed: int, per_node_memory: int, resources: MachineResources,
                reserve_fraction: float = 0.2) -> Optional[str]:
    """Say why ``nodes_needed`` nodes would not fit in memory, or None if they do.

    ``reserve_fraction`` of the available memory is kept for the test process
    and the rest of the machine; the nodes must fit in what remains.
    """
    needed = nodes_needed * per_node_memory
    usable = int(resources.available_memory * (1.0 - reserve_fraction))
    if needed <= usable:
        return None
    return (f"a cluster of {nodes_needed} nodes needs about {format_bytes(needed)} "
            f"({format_bytes(per_node_memory)} estimated per node) but only "
            f"{format_bytes(usable)} is usable ({format_bytes(resources.available_memory)} "
            f"available of {format_bytes(resources.total_memory)}, keeping "
            f"{reserve_fraction:.0%} in reserve); starting it would push the machine "
            f"into swap or get nodes killed for lack of memory. Use a smaller "
            f"cluster size, free some memory, or choose a fallback "
            f"(--fallback reduce or simulate).")


def format_bytes(size: float) -> str:
    """Human-readable binary size: ``format_bytes(1536 * 2**20) == '1.5 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
