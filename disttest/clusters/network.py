"""How the nodes of a cluster reach each other, by network mode.

* ``direct``: every node sees every peer's real address; nothing can be cut.
* ``proxy``: every node reaches every peer port through a TCP proxy of the
  controller (clusters/proxy.py), so faults need no privileges.
* ``netns``: every node has its own network namespace and address; faults are
  routes in the kernel and, for drops and delays, a "delay line" owned by the
  controller (clusters/netns.py). Needs root.
* ``userns``: the same namespaces inside an unprivileged user namespace
  (clusters/userns.py), for an ordinary user where the kernel allows it.
* ``auto``: the strongest of these the machine allows, chosen once per
  cluster (``choose``): netns as root, userns otherwise, proxy last.

A mode is an object with the fault API (partition, isolate, cut, delay, heal,
faults, history, close) plus ``add_route``/``routes_for`` and ``mode``; ``direct``
has none.
"""
from __future__ import annotations

import os

FAULT_MODES = ("proxy", "netns", "userns")


def choose(mode: str) -> tuple[str, str]:
    """The mode a cluster declared ``mode`` gets, and why (for reports)."""
    if mode != "auto":
        return mode, "declared"
    from disttest.clusters import netns_host, userns

    no_root = netns_host.unavailable()
    if no_root is None:
        return "netns", "auto: running as root, the nodes get namespaces of the machine"
    why = (f"not root (uid {os.geteuid()})" if os.geteuid() else f"netns cannot work: {no_root}")
    no_user = userns.unavailable()
    if no_user is None:
        return "userns", f"auto: {why}; unprivileged user namespaces work here"
    return "proxy", (f"auto: {why}; {no_user}; faults apply only to traffic sent to the "
                     "addresses this_node.peers() gives")


def make(mode: str, cluster_id: str, host: str, events):
    """The network of a new cluster: None for ``direct``; ``auto`` is resolved here.
    The object's ``mode`` and ``mode_reason`` say what it is and why."""
    mode, reason = choose(mode)
    if mode == "proxy":
        from disttest.clusters.proxy import ProxyNetwork

        network = ProxyNetwork(host, events)
    elif mode == "netns":
        from disttest.clusters.netns import NetnsNetwork

        network = NetnsNetwork(cluster_id, events=events)
    elif mode == "userns":
        from disttest.clusters.netns import NetnsNetwork
        from disttest.clusters.userns import UserHost

        network = NetnsNetwork(cluster_id, events=events, host=UserHost())
    else:
        return None
    network.mode_reason = reason
    return network


def node_boot(faults, name: str) -> dict:
    """What a network mode changes in a node's bootstrap (its host, how it is started)."""
    setup = getattr(faults, "add_node_boot", None)
    if setup is not None:
        return setup(name)
    faults.add_node(name)
    return {}


def peer_map(faults, nodes) -> dict[str, dict[str, dict[str, tuple[str, int]]]]:
    """For each node: ``{peer: {port_name: (host, port)}}`` as that node must dial it."""
    if faults is None:
        return {node.name: {other.name: {port_name: (other.host, port)
                                         for port_name, port in other.boot["ports"].items()}
                            for other in nodes if other is not node}
                for node in nodes}
    names = {node.name for node in nodes}
    for observer in nodes:
        for peer in nodes:
            if peer is not observer:
                for port_name, port in peer.boot["ports"].items():
                    faults.add_route(observer.name, peer.name, port_name, (peer.host, port))
    return {node.name: {peer: ports for peer, ports in faults.routes_for(node.name).items()
                        if peer in names}
            for node in nodes}
