"""Requirement: what a test needs from a cluster, and whether a cluster fits.

A requirement is read from a test class's attributes (``cluster_size``,
``node_ports``, ``node_env``, ``fresh_cluster``, ``network``) and from method
decorators. Two requirements can share a cluster when their *compatibility
key* (network mode, node environment and SSH hosts) is equal: size is met by growing a
cluster and ports by allocating more names on the existing nodes.

The size rule lives here, once: a class's declared size (or the default),
raised by sizes its methods ask for, replaced by ``--cluster-size``, checked
against ``max_cluster_size`` — or, in CI when the CI profile set that
maximum, capped to it.

This module knows nothing of unittest; it only reads attributes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from collections.abc import Mapping

TYPE_CHECKING = False  # typing is for annotations only: a plain run skips its import
if TYPE_CHECKING:
    from typing import Any

from disttest.errors import ConfigError

NETWORK_MODES = ("direct", "proxy", "netns", "userns", "auto")
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
    # Modules a node template imports before forking (node_start = "template"):
    # speed only, so clusters that differ in them are still compatible.
    preload: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> tuple:
        """Requirements with equal keys can share one cluster."""
        return (self.network, self.env, self.simulated, self.hosts)

    def with_size(self, size: int) -> "Requirement":
        return dataclasses.replace(self, size=size)

    def as_simulated(self) -> "Requirement":
        # Simulated nodes share the test process's network: namespaces cannot
        # separate them, proxies still can.
        network = "proxy" if self.network in ("netns", "userns", "auto") else self.network
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


def cluster_size_option(text: str) -> int:
    """``--cluster-size N`` as a command-line type (python -m disttest and pytest)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; --cluster-size must be a "
                                         "whole number of nodes from 1 up")
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


def check_preload(value: Any, owner: Any) -> tuple[str, ...]:
    """A declared ``preload``: a tuple of module names, any of them "auto", or "auto" alone."""
    from disttest.settings import modules_or_auto

    allowed = ('a tuple of module names such as ("json", "myproject.server"), "auto" among '
               'them or alone (preload = "auto": the modules nodes imported in earlier runs)')
    if isinstance(value, str) and value.strip().lower() != "auto":
        raise ConfigError.bad_value(_where(owner), "preload", value, allowed,
                                    hint=f'write preload = ({value!r},) for one module')
    try:
        return modules_or_auto(value)
    except ValueError as exc:
        raise ConfigError.bad_value(_where(owner), "preload", value, allowed,
                                    cause=str(exc)) from None


def check_network(value: Any, owner: Any) -> str:
    if value not in NETWORK_MODES:
        raise ConfigError.bad_value(_where(owner), "network", value,
                                    " or ".join(repr(m) for m in NETWORK_MODES))
    return value


def check_hosts(value: Any, owner: Any) -> tuple[str, ...]:
    """A declared ``hosts`` list: each ``[user@]host[:port]``, at least one."""
    from disttest.hosts import parse_host

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
        preload=check_preload(getattr(cls, "preload", ()) or (), cls),
    )


def method_sizes(cls: type) -> dict[str, int]:
    """Sizes asked by ``@disttest.cluster_size(n)`` on test methods of ``cls``."""
    sizes = {}
    for name in dir(cls):
        size = getattr(getattr(cls, name, None), "__disttest_cluster_size__", None)
        if size is not None:
            sizes[name] = size
    return sizes


def ci_size_cap(config: Any) -> int | None:
    """``max_cluster_size`` set by the CI profile caps sizes instead of rejecting them."""
    capped = config.ci and "max_cluster_size" in config.from_ci_profile
    return config.max_cluster_size if capped else None


def class_size(cls: type, config: Any, size_override: int | None = None) -> int:
    """The class's own size (``cls.cluster``), before its methods' sizes grow the cluster."""
    cap = ci_size_cap(config)
    size = size_override if size_override is not None else requirement_of(
        cls, default_size=config.default_cluster_size,
        max_size=None if cap else config.max_cluster_size).size
    return min(size, cap) if cap else size


def class_requirement(cls: type, config: Any, size_override: int | None = None,
                      methods: list[str] | None = None) -> Requirement:
    """``cls``'s requirement: its size, or the largest of ``methods``' sizes.

    A size above ``max_cluster_size`` is a bad declaration, except in CI when
    the CI profile set the maximum: there sizes are capped to it.
    """
    cap = ci_size_cap(config)
    maximum = None if cap else config.max_cluster_size
    base = with_configured_hosts(
        requirement_of(cls, default_size=config.default_cluster_size, max_size=maximum),
        config, cls)
    if size_override is not None:
        base = base.with_size(size_override)
    else:
        wanted = [check_size(size, cls, f"cluster_size of {name}", maximum)
                  for name, size in method_sizes(cls).items()
                  if methods is None or name in methods]
        base = base.with_size(max([base.size, *wanted]))
    return base.with_size(min(base.size, cap)) if cap else base


def check_size_override(size: int | None, config: Any) -> None:
    """``--cluster-size`` above ``max_cluster_size`` is refused (a CI profile's cap caps it)."""
    maximum = config.max_cluster_size
    if size and size > maximum and not ci_size_cap(config):
        raise ConfigError.bad_value(
            "command line --cluster-size", "--cluster-size", size,
            f"a whole number of nodes from 1 to {maximum} (max_cluster_size)",
            hint="lower --cluster-size, or raise max_cluster_size in the configuration")
