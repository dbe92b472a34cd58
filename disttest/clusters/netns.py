"""Network faults in the kernel: a network namespace per node (``network = "netns"``).

Every node runs in a network namespace of its own, with its own address on a
private /24 (10.213.X.0/24, X free on this machine) behind a veth pair, on a
bridge of the root namespace that holds the gateway address (.1), through
which the controller reaches every node. Nodes dial each other's real
addresses, so faults apply to every connection between two nodes, also to
addresses a node announces itself, and to UDP.

A fault on the directed link a→b changes how a's namespace routes packets
to b's address:

* ``reject``: an ``unreachable`` route to b: a's connects and sends fail at
  once (EHOSTUNREACH). In b's namespace, an ``unreachable`` route to a in a
  table that only TCP consults makes b's handshakes to a fail at once too
  (a handshake needs both directions) while b's datagrams still reach a.
  Connections already open between the two are aborted (``ss -K``).
* ``drop`` and delays: a route to b through a TUN device whose other end is
  a thread of the controller, the *delay line*. It discards the packets of a
  dropped link, and holds those of a delayed one for ``seconds ± jitter``
  before it writes them, in order, into b's TUN device.

Things that don't work, and what is done instead:

* A ``blackhole`` route does not drop: connect() and send() fail at once
  with EINVAL, the opposite of silence. Solution: the delay line discards
  the packets after the sender's stack has let go of them.
* netem, the prio qdisc and the gact ``drop`` action are kernel options
  that small kernels (VMs, CI sandboxes) leave out, and iptables/nft may be
  missing. Solution: iproute2's ``ip`` and ``ss`` only, on CONFIG_TUN and
  CONFIG_INET_DIAG_DESTROY; only the packets of dropped or delayed links
  leave the kernel.
* A default route out of a node namespace could carry test traffic off the
  machine wherever the root namespace forwards. Solution: nodes have no
  default route; they reach their own subnet (peers, and the controller at
  the gateway address) and nothing else.
* Namespaces, links and routes outlive a controller that dies. Solution:
  every namespace name and link alias carries its owner (pid and start time,
  as pids are reused); ``cleanup_leftovers()`` removes those of owners that
  are gone before a new network is made. TUN devices vanish by themselves
  with the descriptors of their process.

What acts on the machine (commands, names, leftovers) is in netns_host.py,
which route each fault needs in netns_routes.py, and the delay line's thread
in delayline.py.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import weakref
from typing import Any

from disttest.clusters import netns_routes as routes
from disttest.clusters.delayline import DelayLine
from disttest.clusters.faults import FaultRules, node_name
from disttest.clusters.netns_host import (
    ALIAS, NS_PREFIX, SUBNETS, TCP_TABLE, CommandError, RootHost, cleanup_leftovers, ip_batch,
    owner_name, unavailable)
from disttest.errors import ClusterStartError, NetworkModeError

__all__ = ["NetnsNetwork", "unavailable", "cleanup_leftovers", "SUBNETS"]


class _Node:
    """One node's namespace and links."""

    def __init__(self, name: str, index: int, address: str, namespace: str, tag: str) -> None:
        self.name, self.index, self.address, self.namespace = name, index, address, namespace
        self.veth = f"dtv{tag}-{index}"  # root side; the namespace side is eth0
        self.tun = f"dtt{tag}-{index}"   # to and from the delay line, made on first use
        self.tun_fd: int | None = None


class _Resources:
    """What ``close()`` must remove; shared with the finalizer, so it never holds the network."""

    def __init__(self) -> None:
        self.bridge: str | None = None  # set just before it is made
        self.nodes: list[_Node] = []


def _teardown(host: Any, resources: _Resources, line: DelayLine) -> list[int]:
    """Remove every namespace and link of a network; the pids of processes still inside."""
    line.stop()
    killed: list[int] = []
    lines: list[str] = []
    try:
        for node in resources.nodes:
            if node.tun_fd is not None:
                os.close(node.tun_fd)  # the device goes with its last descriptor
                node.tun_fd = None
            killed += host.kill_inside(node.namespace)
            lines += [f"link del {node.veth}", f"netns del {node.namespace}"]
        if resources.bridge:
            lines.append(f"link del {resources.bridge}")
        if lines:
            ip_batch(lines, force=True, check=False, run=host.run)
    except CommandError:  # the host went first (its namespaces with it)
        pass
    finally:
        host.close()
    resources.nodes.clear()
    resources.bridge = None
    return killed


class NetnsNetwork(FaultRules):
    """The namespaces of one cluster, and the faults currently applied.

    Same fault API and errors as :class:`~disttest.clusters.proxy.ProxyNetwork`.
    Fault methods may be called from any thread; each returns once its routes
    are in place. ``events``: an event bus, for "warning" events (leftovers
    removed, processes killed at close, the delay line stopping on an error).
    """

    _members = "faults apply to the nodes that have a namespace in this network"
    _self_traffic = "a node's traffic to itself never leaves its namespace"
    _reject = "connects fail at once with EHOSTUNREACH, open connections are aborted"

    def __init__(self, cluster_id: str, events=None, host: Any = None) -> None:
        self._host = host = RootHost() if host is None else host
        self.mode: str = host.mode
        problem = host.unavailable()
        if problem:
            raise ClusterStartError(
                f"network = {host.mode!r} cannot be used on this machine", problem,
                host.refusal_steps, kind=f"{host.mode}-unavailable")
        self.cluster_id = cluster_id
        self.events = events
        self.owner = owner_name()
        self._tag = secrets.token_hex(3)
        self._label = re.sub(r"[^A-Za-z0-9_.-]", "_", str(cluster_id))[:40] or "cluster"
        self._alias = f"{ALIAS}:{self.owner}:{self._label}"
        self._lock = threading.RLock()  # held through every change: they apply one at a time
        self._nodes: dict[str, _Node] = {}
        self._addresses: dict[tuple[str, str, str], tuple[str, int]] = {}
        # Replaced, never mutated, so any thread may read them.
        self._cuts: dict[tuple[str, str], str] = {}
        self._delays: dict[tuple[str, str], tuple[float, float]] = {}
        self._installed: dict[str, dict[tuple[str, str], str]] = {}  # node -> {key: command}
        self._history: list[dict[str, Any]] = []
        self._closed = False
        self._line = DelayLine(self._crashed)
        self._resources = _Resources()
        self._finalizer = weakref.finalize(self, _teardown, host, self._resources, self._line)
        self.bridge = f"dtb{self._tag}"
        try:
            host.start()
        except ClusterStartError:
            self.close()
            raise
        with host.subnet_lock():
            try:
                removed = host.remove_leftovers()
                subnet = host.free_subnet()
                if subnet is None:
                    self.close()
                    raise ClusterStartError(
                        f"no free /24 left in {SUBNETS} for a netns cluster",
                        "every one of them holds an address or a route of this machine",
                        ["stop other netns clusters, or remove the routes that cover "
                         f"{SUBNETS}"], kind="netns-setup")
                self.subnet = subnet
                hosts = [str(h) for h in subnet.hosts()]
                self.gateway, self._free = hosts[0], hosts[1:]
                self._resources.bridge = self.bridge
                self._ip([f"link add {self.bridge} type bridge",
                          f"link set {self.bridge} alias {self._alias}",
                          f"addr add {self.gateway}/{subnet.prefixlen} dev {self.bridge}",
                          f"link set {self.bridge} up"])
            except CommandError as exc:
                self.close()
                raise ClusterStartError("could not make the bridge of a netns cluster",
                                        str(exc), ["run: python -m disttest preflight"],
                                        kind="netns-setup") from None
        if removed and events is not None:  # (root namespace only)
            events.emit("warning", message="removed network namespaces and links that "
                        f"ended runs left behind: {', '.join(removed)}")

    # -- nodes and routes ----------------------------------------------------------
    def add_node_boot(self, name: Any) -> dict:
        """Give node ``name`` a namespace and an address (once); what its bootstrap
        changes: ``{"host": address, "exec_prefix": ["ip", "netns", "exec", ns]}``."""
        name = node_name(name)
        with self._lock:
            if self._closed:
                raise _closed_error()
            node = self._nodes.get(name) or self._make_node(name)
            return {"host": node.address, "exec_prefix": self._host.exec_prefix(node.namespace)}

    def add_node(self, node: Any) -> None:
        """Make ``node`` known (and give it its namespace) before it has a route."""
        self.add_node_boot(node)

    def address(self, node: Any) -> str:
        """The address of ``node`` in its namespace."""
        self._check_node(node_name(node), "address")
        return self._nodes[node_name(node)].address

    def namespace(self, node: Any) -> str:
        """The name of the network namespace of ``node`` (for ``ip netns exec``)."""
        self._check_node(node_name(node), "namespace")
        return self._nodes[node_name(node)].namespace

    def add_route(self, observer: Any, peer: Any, port_name: str,
                  target: tuple[str, int]) -> tuple[str, int]:
        """Nodes dial each other directly: returns ``target``, recorded for ``routes_for``."""
        key = (node_name(observer), node_name(peer), port_name)
        target = (target[0], int(target[1]))
        with self._lock:
            if self._closed:
                raise _closed_error()
            self._addresses[key] = target
            return target

    def routes(self, node: Any, table: str | int = "main") -> list[str]:
        """The routes in ``table`` of ``node``'s namespace, as ``ip route show`` lists them
        (to see what the faults did; an empty table lists nothing)."""
        self._check_node(node_name(node), "routes")
        listing = self._host.run(["ip", "-n", self._nodes[node_name(node)].namespace, "route",
                                  "show", "table", str(table)], check=False)
        return [line.strip() for line in listing.splitlines() if line.strip()]

    def dial(self, address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        """A TCP connection from this process to ``address`` (a node's address)."""
        return self._host.dial(address, timeout)

    # -- lifetime ------------------------------------------------------------------
    def close(self) -> None:
        """Remove every namespace, link and TUN device of this network; idempotent.
        Processes still inside a namespace are killed: they have no network left."""
        with self._lock:
            self._closed = True
            if not self._finalizer.alive:
                return
            killed = self._finalizer() or []
        if killed and self.events is not None:
            self.events.emit("warning", message=f"netns cluster {self.cluster_id}: killed "
                             f"{len(killed)} process(es) still in its namespaces: "
                             f"{', '.join(map(str, killed))}")

    def __enter__(self) -> "NetnsNetwork":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        subnet = getattr(self, "subnet", None)
        state = "closed" if self._closed else f"{len(self._nodes)} nodes on {subnet}"
        return f"<NetnsNetwork {self.cluster_id}, {state}, {len(self.faults())} faults>"

    # -- helpers (the caller holds self._lock) ---------------------------------------
    def _make_node(self, name: str) -> _Node:
        if not self._free:
            raise ClusterStartError(
                f"a netns cluster has at most {self.subnet.num_addresses - 3} nodes",
                f"its nodes share the subnet {self.subnet}", ["start a smaller cluster"],
                kind="netns-setup")
        index = len(self._resources.nodes)
        node = _Node(name, index, self._free.pop(0),
                     f"{NS_PREFIX}{self.owner}-{self._label}-{index}", self._tag)
        self._resources.nodes.append(node)  # close() removes it even if a step below fails
        try:
            self._host.run(["ip", "netns", "add", node.namespace])
            self._host.prepare_namespace(node.namespace)
            self._ip([f"link add {node.veth} type veth peer name eth0 netns {node.namespace}",
                      f"link set {node.veth} alias {self._alias}",
                      f"link set {node.veth} master {self.bridge}",
                      f"link set {node.veth} up"])
            self._ip([f"addr add {node.address}/{self.subnet.prefixlen} dev eth0",
                      "link set eth0 up", "link set lo up",
                      f"rule add pref {TCP_TABLE} ipproto tcp lookup {TCP_TABLE}"],
                     netns=node.namespace)
        except CommandError as exc:
            raise ClusterStartError(f"could not give node {name} its network namespace",
                                    str(exc), ["run: python -m disttest preflight"],
                                    kind="netns-setup") from None
        self._nodes[name] = node
        self._line.add_address(node.address, name)
        return node

    def _apply(self, cuts: dict, delays: dict, heal: bool = False) -> None:
        """Bring every namespace's routes in line with ``cuts`` and ``delays``."""
        if self._closed:
            raise _closed_error()
        wanted = routes.plan(self._nodes, cuts, delays)
        old_rejects = {frozenset(link) for link, mode in self._cuts.items() if mode == "reject"}
        new_rejects = {frozenset(link) for link, mode in cuts.items() if mode == "reject"}
        try:
            for name in sorted(routes.line_users(cuts, delays)):
                self._ensure_line(self._nodes[name])
            # The line learns the faults before routes send it packets, and keeps
            # releasing what it holds after routes stop doing so.
            self._line.set_faults(cuts, delays)
            for name in sorted(set(wanted) | set(self._installed)):
                self._converge(self._nodes[name], wanted.get(name, {}), force=heal)
            for pair in sorted(map(sorted, new_rejects - old_rejects)):
                self._abort(*pair)
        except CommandError as exc:
            self._line.set_faults(self._cuts, self._delays)
            raise NetworkModeError(
                f"could not change the routes of a netns cluster: {exc.command}", exc.output,
                ["heal() removes every route this network added",
                 "report it as a disttest bug, with this message"],
                kind="netns-command") from None
        if heal:
            self._line.flush()
        self._cuts, self._delays = cuts, delays

    def _converge(self, node: _Node, wanted: dict[tuple[str, str], str], force: bool) -> None:
        lines = routes.changes(self._nodes, self._installed.get(node.name, {}), wanted)
        if lines:
            try:
                self._ip(lines, netns=node.namespace, force=force, check=not force)
            except CommandError:
                self._installed.pop(node.name, None)  # unknown now: heal() clears by force
                raise
        self._installed[node.name] = dict(wanted)

    def _ensure_line(self, node: _Node) -> None:
        """Connect ``node``'s namespace to the delay line (on first use)."""
        if node.tun_fd is not None:
            return
        node.tun_fd, frame = self._host.open_line(node.namespace, node.tun, node.index)
        self._line.add_device(node.name, node.tun_fd, frame)

    def _abort(self, a: str, b: str) -> None:
        """Abort the TCP connections between a and b, on both ends."""
        for here, there in ((self._nodes[a], self._nodes[b]), (self._nodes[b], self._nodes[a])):
            self._host.run(["ss", "-N", here.namespace, "-K", "-t", "dst", there.address])

    def _ip(self, lines: list[str], netns: str | None = None, force: bool = False,
            check: bool = True) -> None:
        ip_batch(lines, netns, force, check, run=self._host.run)

    def _crashed(self, text: str) -> None:
        if self.events is not None:
            self.events.emit("warning", message=f"netns cluster {self.cluster_id}: the delay "
                             "line stopped on an error; dropped and delayed links lose every "
                             "packet now:\n" + text)



def _closed_error() -> NetworkModeError:
    return NetworkModeError("the netns network is closed",
                            "close() was called, or its cluster was stopped",
                            ["acquire a new cluster"])
