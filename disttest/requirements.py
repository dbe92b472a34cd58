"""Requirement: what a test needs from a cluster, and whether a cluster fits.

A requirement is read from a test class's attributes (``cluster_size``,
``node_ports``, ``node_env``, ``fresh_cluster``, ``network``) and from method
decorators. Two requirements can share a cluster when their *compatibility
key* (network mode, node environment and SSH hosts) is equal: size is met by growing a
cluster and ports by allocating more names on the existing nodes.

This module knows nothing of unittest; it only reads attributes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from collections.abc import Mapping

TYPE_CHECKING = False  # typing is for annotations only: a plain run skips its import
if TYPE_CHECKING:
    from typing import Any, Iterable

from disttest.errors import ConfigError

NETWORK_MODES = ("direct", "proxy", "netns")
DEFAULT_PORTS = ("app",)


@dataclass(frozen=True)
class Requirement:
    """A cluster shape: ``size`` nodes, each with ``ports``, ``env`` and ``network``."""

    size: int
    ports: tuple[str, ...] = DEFAULT_PORTS
    env: tuple[tuple[str, str], ...] = ()
    network: str = "direct"
    fresh: bool = False
    min_size: int | None = None
    simulated: bool = False
    tags: frozenset[str] = field(default_factory=frozenset, compare=False)
    hosts: tuple[str, ...] = ()  # SSH hosts the nodes go to; () = local processes

    @property
    def key(self) -> tuple:
        """Requirements with equal keys can share one cluster."""
        return (self.network, self.env, self.simulated, self.hosts)

    def serves(self, other: "Requirement") -> bool:
        """True when a cluster made for ``self`` satisfies ``other`` as it is."""
        return (self.key == other.key and self.size >= other.size
                and set(self.ports) >= set(other.ports))

    def merge(self, other: "Requirement") -> "Requirement":
        """The smallest requirement that serves both (same key only)."""
        assert self.key == other.key
        return Requirement(max(self.size, other.size),
                           tuple(sorted(set(self.ports) | set(other.ports))),
                           self.env, self.network, self.fresh or other.fresh,
                           None, self.simulated, self.tags | other.tags, self.hosts)

    def with_size(self, size: int) -> "Requirement":
        return dataclasses.replace(self, size=size)

    def as_simulated(self) -> "Requirement":
        # Simulated nodes share the test process's network: namespaces cannot
        # separate them, proxies still can.
        network = "proxy" if self.network == "netns" else self.network
        return dataclasses.replace(self, simulated=True, network=network, hosts=())  # threads run here

    def describe(self) -> str:
        parts = [f"{self.size} node{'s' if self.size != 1 else ''}"]
        if self.ports != DEFAULT_PORTS:
            parts.append("ports " + ",".join(self.ports))
        if self.env:
            parts.append("env " + ",".join(f"{k}={v}" for k, v in self.env))
        if self.network != "direct":
            parts.append(f"network {self.network}")
        if self.simulated:
            parts.append("simulated")
        if self.hosts:
            parts.append("on " + ",".join(self.hosts))
        if self.fresh:
            parts.append("fresh")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "ports": list(self.ports), "env": dict(self.env),
                "network": self.network, "fresh": self.fresh, "simulated": self.simulated,
                "hosts": list(self.hosts)}


def _where(owner: Any) -> str:
    if isinstance(owner, type):
        return f"test class {owner.__module__}.{owner.__qualname__}"
    return str(owner)


def check_size(value: Any, owner: Any, attribute: str = "cluster_size",
               maximum: int | None = None) -> int:
    """Validate a declared size; the error names the class, attribute and value."""
    allowed = "a whole number of nodes from 1" + (f" to {maximum} (max_cluster_size)"
                                                 if maximum else " up")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError.bad_value(_where(owner), attribute, value, allowed)
    if maximum is not None and value > maximum:
        raise ConfigError.bad_value(
            _where(owner), attribute, value, allowed,
            hint=f"lower {attribute}, or raise max_cluster_size in the configuration")
    return value


def check_ports(value: Any, owner: Any) -> tuple[str, ...]:
    allowed = 'a tuple of port names such as ("app", "admin")'
    if isinstance(value, str) and "," not in value:
        raise ConfigError.bad_value(
            _where(owner), "node_ports", value, allowed,
            hint=f"write node_ports = ({value!r},): a single name needs the trailing comma")
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
        raise ConfigError.bad_value(_where(owner), "node_ports", value, allowed)
    for name in value:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError.bad_value(_where(owner), "node_ports", value,
                                        allowed + " (each a valid identifier)")
    if len(set(value)) != len(value):
        raise ConfigError.bad_value(_where(owner), "node_ports", value,
                                    allowed + " without repeats")
    return tuple(sorted(value))


def check_env(value: Any, owner: Any) -> tuple[tuple[str, str], ...]:
    allowed = "a mapping of environment variable names to strings"
    if not isinstance(value, Mapping):
        raise ConfigError.bad_value(_where(owner), "node_env", value, allowed)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str) or not key or "=" in key:
            raise ConfigError.bad_value(_where(owner), "node_env", value, allowed)
    return tuple(sorted(value.items()))


def check_network(value: Any, owner: Any) -> str:
    if value not in NETWORK_MODES:
        raise ConfigError.bad_value(_where(owner), "network", value,
                                    " or ".join(repr(m) for m in NETWORK_MODES))
    return value


def check_hosts(value: Any, owner: Any) -> tuple[str, ...]:
    """A declared ``hosts`` list: each ``[user@]host[:port]``, at least one."""
    from disttest.clusters.ssh import parse_host  # stdlib only

    allowed = 'a list of SSH hosts such as ["node1", "me@node2:2222"]'
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
        raise ConfigError.bad_value(_where(owner), "hosts", value, allowed)
    for spec in value:
        try:
            parse_host(spec)
        except ValueError as exc:
            raise ConfigError.bad_value(_where(owner), "hosts", value, allowed,
                                        hint=f"fix {spec!r}: {exc}") from None
    return tuple(spec.strip() for spec in value)


def with_configured_hosts(requirement: Requirement, config: Any,
                          owner: Any = "the configuration") -> Requirement:
    """``requirement`` on the configured SSH hosts when ``launcher = "ssh"`` and it names none.

    Nodes on SSH hosts reach each other directly: the fault proxies and
    namespaces of the other network modes live on the controller's machine.
    """
    if (not requirement.hosts and not requirement.simulated
            and getattr(config, "launcher", "local") == "ssh"):
        requirement = dataclasses.replace(requirement, hosts=tuple(getattr(config, "hosts", ())))
    if requirement.hosts and requirement.network != "direct":
        raise ConfigError.bad_value(
            _where(owner), "network", requirement.network,
            '"direct" for nodes on SSH hosts',
            hint='use network = "direct" for this class, or run it on local nodes '
                 '(launcher = "local" and no hosts)')
    return requirement


def requirement_of(cls: type, size: int | None = None, default_size: int = 3,
                   max_size: int | None = None) -> Requirement:
    """Read ``cls``'s declaration into a Requirement (``size`` overrides it)."""
    declared = getattr(cls, "cluster_size", None)
    if size is None:
        size = default_size if declared is None else check_size(declared, cls, maximum=max_size)
    min_size = getattr(cls, "min_cluster_size", None)
    if min_size is not None:
        min_size = check_size(min_size, cls, "min_cluster_size", maximum=max_size)
    tags = frozenset(getattr(cls, "tags", ()) or ()) | {"distributed"}
    hosts = getattr(cls, "hosts", None)
    return Requirement(
        size=size,
        ports=check_ports(getattr(cls, "node_ports", DEFAULT_PORTS), cls),
        env=check_env(getattr(cls, "node_env", {}) or {}, cls),
        network=check_network(getattr(cls, "network", "direct"), cls),
        fresh=bool(getattr(cls, "fresh_cluster", False)),
        min_size=min_size,
        tags=tags,
        hosts=() if hosts is None else check_hosts(hosts, cls),
    )


def merge_all(requirements: Iterable[Requirement]) -> Requirement:
    merged: Requirement | None = None
    for req in requirements:
        merged = req if merged is None else merged.merge(req)
    if merged is None:
        raise ValueError("no requirements to merge")
    return merged
