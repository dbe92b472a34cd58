"""Traffic the proxy cannot see: a node connected straight to a peer's real port.

With ``network = "proxy"`` a node reaches a peer through the proxy address the
peer map gives it. A system that learns its peers' addresses some other way
(each node announcing its own address, as Raft libraries and schedulers do)
connects to the real ports instead, and faults cannot apply to that traffic.
``find`` looks at the open TCP connections of the nodes' processes (and their
children) for one that ends at another node's real port.
"""
from __future__ import annotations

from typing import Any, Iterable

import psutil

__all__ = ["find", "warning"]


def find(nodes: Iterable[Any]) -> list[tuple[str, str, str, int]]:
    """``(client, server, port name, port)`` for each node connected straight to another
    node's real port (the server accepted it), sorted."""
    nodes = list(nodes)
    real = {port: (node.name, port_name) for node in nodes
            for port_name, port in node.ports.items()}
    found: set[tuple[str, str, str, int]] = set()
    for node in nodes:
        for conn in _connections(node.local_pid):
            if conn.status != psutil.CONN_ESTABLISHED or not conn.raddr:
                continue
            target = real.get(conn.raddr.port)
            # The node's own listening port, seen from the accepting side, is not a dial.
            if target is None or target[0] == node.name or conn.laddr.port in real:
                continue
            found.add((node.name, target[0], target[1], conn.raddr.port))
    return sorted(found)


def warning(client: str, server: str, port_name: str, port: int) -> str:
    return (f"{client} connected straight to {server}'s port {port_name!r} ({port}), "
            f"not through its proxy address, and {server} accepted it: network faults "
            f"between {client} and {server} do not apply to that connection. Use "
            'network = "auto" (or "userns"/"netns"), which gives every node its own '
            "address, for a system whose nodes find each other by address")


def _connections(pid: int | None) -> list:
    if pid is None:
        return []
    found = []
    try:
        root = psutil.Process(pid)
        processes = [root] + root.children(recursive=True)
    except psutil.Error:
        return []
    for process in processes:
        try:
            listing = getattr(process, "net_connections", None) or process.connections
            found += listing(kind="tcp")
        except psutil.Error:
            pass
    return found
