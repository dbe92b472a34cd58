"""Route planning of the netns mode: which route each namespace holds for a fault.

Pure functions of the faults in force (a directed link -> "drop" or "reject";
a directed link -> (seconds, jitter)) and of the nodes (anything with an
``address`` and a ``tun`` device name). ``NetnsNetwork`` runs what they return.

A fault on the directed link a→b changes how a's namespace routes packets to
b's address:

* ``reject``: an ``unreachable`` route to b in a's main table, and one to a in
  a table of b's that only TCP consults (``TCP_TABLE``), so handshakes fail at
  once both ways while b's datagrams still reach a.
* ``drop`` and delays: a route to b through a's TUN device, to the delay line.
"""
from __future__ import annotations

from typing import Any, Mapping

from disttest.clusters.netns_host import TCP_TABLE

__all__ = ["plan", "line_users", "changes"]



def plan(nodes: Mapping[str, Any], cuts: dict,
         delays: dict) -> dict[str, dict[tuple[str, str], str]]:
    """For each node: ``{(table, peer): ip command}`` that its namespace must hold."""
    wanted: dict[str, dict[tuple[str, str], str]] = {}
    for a, b in set(cuts) | set(delays):
        src, dst = nodes[a], nodes[b]
        if cuts.get((a, b)) == "reject":
            wanted.setdefault(a, {})[("main", b)] = (
                f"route replace unreachable {dst.address}/32")
            wanted.setdefault(b, {})[("tcp", a)] = (
                f"route replace unreachable {src.address}/32 table {TCP_TABLE}")
        else:  # dropped or delayed: through the delay line
            wanted.setdefault(a, {})[("main", b)] = (
                f"route replace {dst.address}/32 dev {src.tun} src {src.address}")
    return wanted


def line_users(cuts: dict, delays: dict) -> set[str]:
    """Nodes whose delay-line device the faults use: senders on the line, and
    receivers of delayed packets."""
    users = {a for (a, b) in delays if cuts.get((a, b)) != "reject"}
    users |= {b for (a, b) in delays}
    users |= {a for (a, b), mode in cuts.items() if mode == "drop"}
    return users


def changes(nodes: Mapping[str, Any], have: dict[tuple[str, str], str],
            wanted: dict[tuple[str, str], str]) -> list[str]:
    """The ``ip`` batch lines that turn the routes ``have`` into ``wanted``."""
    lines = [_removal(nodes, key) for key in sorted(set(have) - set(wanted))]
    lines += [command for key, command in sorted(wanted.items()) if have.get(key) != command]
    return lines


def _removal(nodes: Mapping[str, Any], key: tuple[str, str]) -> str:
    table, peer = key
    where = f" table {TCP_TABLE}" if table == "tcp" else ""
    return f"route del {nodes[peer].address}/32{where}"
