"""How the nodes of a cluster reach each other, by network mode.

* ``direct``: every node sees every peer's real address; nothing can be cut.
* ``proxy``: every node reaches every peer port through a TCP proxy of the
  controller (clusters/proxy.py), so faults need no privileges.
* ``netns``: every node has its own network namespace and address; faults are
  routes in the kernel and, for drops and delays, a TUN "delay line" owned by
  the controller (clusters/netns.py).

A mode is an object with the fault API (partition, isolate, cut, delay, heal,
faults, history, close) plus ``add_route``/``routes_for``; ``direct`` has none.
"""
from __future__ import annotations


def make(mode: str, cluster_id: str, host: str, events):
    if mode == "proxy":
        from disttest.clusters.proxy import ProxyNetwork

        return ProxyNetwork(host, events)
    if mode == "netns":
        from disttest.clusters.netns import NetnsNetwork

        return NetnsNetwork(cluster_id, events=events)
    return None


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
