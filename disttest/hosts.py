"""SSH host entries: ``[user@]host[:port]`` as ``hosts`` declares them.

Read by the configuration and by class declarations (to check them) and by
the SSH launcher (to reach them); standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    """One ``[user@]host[:port]`` entry of ``hosts``."""

    spec: str
    user: str | None
    name: str
    port: int | None

    @property
    def target(self) -> str:
        return f"{self.user}@{self.name}" if self.user else self.name


def parse_host(spec: str) -> Host:
    """Parse ``host``, ``user@host``, ``host:port``, ``user@host:port`` or ``[v6]:port``.

    Raises ValueError saying what is wrong.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("a host cannot be empty")
    text = spec.strip()
    if any(c.isspace() for c in text):
        raise ValueError(f"{text!r} contains a space")
    user, at, rest = text.rpartition("@")
    if at and not user:
        raise ValueError(f"{text!r} has an empty user name before '@'")
    port_text = ""
    if rest.startswith("["):
        name, bracket, after = rest[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(f"{text!r}: write an IPv6 address as [address] or [address]:port")
        port_text = after[1:]
        if after and not port_text:
            raise ValueError(f"{text!r} has an empty port after ':'")
    elif rest.count(":") == 1:
        name, _, port_text = rest.partition(":")
        if not port_text:
            raise ValueError(f"{text!r} has an empty port after ':'")
    else:  # a bare IPv6 address has several colons and no port
        name = rest
    if not name:
        raise ValueError(f"{text!r} has no host name")
    if name.startswith("-") or user.startswith("-"):
        raise ValueError(f"{text!r} would be read as an ssh option")
    port = None
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    return Host(text, user or None, name, port)
