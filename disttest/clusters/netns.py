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
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import random
import re
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections import deque
from contextlib import contextmanager
from typing import Any, Iterator

from disttest.clusters.faults import FaultRules, _name
from disttest.errors import ClusterStartError, NetworkModeError

__all__ = ["NetnsNetwork", "unavailable", "cleanup_leftovers", "SUBNETS"]

SUBNETS = ipaddress.ip_network("10.213.0.0/16")  # each network takes a free /24 of it
TCP_TABLE = 213               # routing table only TCP consults (the far side of reject cuts)
NS_PREFIX = "disttest-"       # namespaces: disttest-<owner>-<cluster id>-<index>
ALIAS = "disttest-netns"      # alias of every link made here: disttest-netns:<owner>:<cluster id>
COMMAND_TIMEOUT = 30.0
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000


# -- the machine ---------------------------------------------------------------------
def unavailable() -> str | None:
    """None when netns mode can work here, else why not (in one sentence)."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces exist on Linux only, and this is {sys.platform}"
    if os.geteuid() != 0:
        return ("only root can make network namespaces, links and routes "
                f"(this process runs as uid {os.geteuid()})")
    for tool in ("ip", "ss"):
        if _tool(tool) is None:
            return f"the {tool!r} command of iproute2 is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (a kernel without CONFIG_TUN, or an incomplete /dev)"
    probe = f"{NS_PREFIX}{_owner()}-probe{secrets.token_hex(2)}"
    try:
        _run([_tool("ip"), "netns", "add", probe])
    except _CommandError as exc:
        return f"`ip netns add` fails: {exc.output}"
    finally:
        _run([_tool("ip"), "netns", "del", probe], check=False)
    return None


def cleanup_leftovers() -> list[str]:
    """Remove the namespaces and links of netns networks whose controller no
    longer runs (killed before it could clean up); returns their names."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or _tool("ip") is None:
        return []
    with _machine_lock():
        try:
            return _remove_leftovers()
        except _CommandError as exc:
            raise NetworkModeError("could not list network namespaces and links", str(exc),
                                   ["check that `ip netns list` and `ip -j link` work"],
                                   kind="netns-command") from None


def _remove_leftovers() -> list[str]:
    removed: list[str] = []
    lines: list[str] = []
    for link in json.loads(_run([_tool("ip"), "-j", "link", "show"]) or "[]"):
        parts = link.get("ifalias", "").split(":")
        if parts[0] == ALIAS and len(parts) > 1 and not _owner_alive(parts[1]):
            lines.append(f"link del {link['ifname']}")
            removed.append(link["ifname"])
    for namespace in _namespaces():
        if namespace.startswith(NS_PREFIX):
            owner = namespace[len(NS_PREFIX):].split("-", 1)[0]
            if not _owner_alive(owner):
                _kill_inside(namespace)
                lines.append(f"netns del {namespace}")
                removed.append(namespace)
    if lines:
        _ip(lines, force=True, check=False)
    return removed


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _run([_tool("ip"), "netns", "list"]).splitlines()
            if line.strip()]


def _kill_inside(namespace: str) -> list[int]:
    """SIGKILL every process of ``namespace``; their pids."""
    pids = [int(p) for p in _run([_tool("ip"), "netns", "pids", namespace], check=False).split()
            if p.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def _owner(pid: int | None = None) -> str:
    """``<pid>.<start time>``: names one process, where a pid alone is reused."""
    pid = os.getpid() if pid is None else pid
    start = _start_time(pid)
    return str(pid) if start is None else f"{pid}.{start}"


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot); None if it does not run."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):  # a zombie has ended
        return None
    return int(fields[19])


def _owner_alive(owner: str) -> bool:
    pid, _, start = owner.partition(".")
    if not pid.isdigit():
        return True  # not a name made here: leave it alone
    running = _start_time(int(pid))
    return running is not None and (not start or start == str(running))


@contextmanager
def _machine_lock() -> Iterator[None]:
    """Serializes subnet choice and leftover removal between controllers."""
    folder = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    fd = os.open(os.path.join(folder, "disttest-netns.lock"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _free_subnet() -> ipaddress.IPv4Network | None:
    """A /24 of SUBNETS that no address or route of this machine touches."""
    ip = _tool("ip")
    used: list[ipaddress.IPv4Network] = []
    for link in json.loads(_run([ip, "-j", "-4", "addr", "show"]) or "[]"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.ip_network(info["local"]))
            used.append(ipaddress.ip_network(f"{info['local']}/{info.get('prefixlen', 32)}",
                                             strict=False))
    for route in json.loads(_run([ip, "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        try:
            used.append(ipaddress.ip_network(route.get("dst", ""), strict=False))
        except ValueError:  # "default", or a form this parser does not know
            pass
    for subnet in list(SUBNETS.subnets(new_prefix=24))[1:]:
        # A route shorter than /16 (a 10.0.0.0/8 LAN) is only shadowed for this /24;
        # anything closer, or an address inside it, is a conflict.
        if not any(net.overlaps(subnet) and (net.prefixlen >= 16 or net.prefixlen == 32)
                   for net in used):
            return subnet
    return None


# -- commands ------------------------------------------------------------------------
class _CommandError(Exception):
    def __init__(self, command: str, output: str) -> None:
        super().__init__(f"{command}: {output}")
        self.command, self.output = command, output


def _tool(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _CommandError(" ".join(map(str, argv)), str(exc)) from None
    if check and done.returncode:
        raise _CommandError(" ".join(argv), (done.stderr or done.stdout).strip())
    return done.stdout


def _ip(lines: list[str], netns: str | None = None, force: bool = False,
        check: bool = True) -> None:
    """Run ``lines`` as one ``ip -batch`` (in ``netns``); an error names the failing line."""
    argv = [_tool("ip")] + (["-n", netns] if netns else []) + (["-force"] if force else [])
    try:
        _run(argv + ["-batch", "-"], "\n".join(lines) + "\n", check)
    except _CommandError as exc:
        where = re.search(r"Command failed -:(\d+)", exc.output)
        line = lines[int(where.group(1)) - 1] if where else "; ".join(lines)
        prefix = f"ip -n {netns} " if netns else "ip "
        raise _CommandError(prefix + line, exc.output.split("\nCommand failed")[0]) from None


def _open_tun(name: str) -> int:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _CommandError("open /dev/net/tun", str(exc)) from None
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise _CommandError(f"TUNSETIFF {name}", str(exc)) from None
    return fd


# -- the network ---------------------------------------------------------------------
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


def _teardown(resources: _Resources, line: "_DelayLine") -> list[int]:
    """Remove every namespace and link of a network; the pids of processes still inside."""
    line.stop()
    killed: list[int] = []
    lines: list[str] = []
    for node in resources.nodes:
        if node.tun_fd is not None:
            os.close(node.tun_fd)  # the device goes with its last descriptor
            node.tun_fd = None
        killed += _kill_inside(node.namespace)
        lines += [f"link del {node.veth}", f"netns del {node.namespace}"]
    if resources.bridge:
        lines.append(f"link del {resources.bridge}")
    if lines:
        _ip(lines, force=True, check=False)
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

    def __init__(self, cluster_id: str, events=None) -> None:
        problem = unavailable()
        if problem:
            raise ClusterStartError(
                "network = 'netns' cannot be used on this machine", problem,
                ["run the tests as root on Linux, with iproute2 (ip, ss) installed",
                 'or declare network = "proxy": its faults need no privileges'],
                kind="netns-unavailable")
        self.cluster_id = cluster_id
        self.events = events
        self.owner = _owner()
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
        self._line = _DelayLine(self._crashed)
        self._resources = _Resources()
        self._finalizer = weakref.finalize(self, _teardown, self._resources, self._line)
        self.bridge = f"dtb{self._tag}"
        with _machine_lock():
            try:
                removed = _remove_leftovers()
                subnet = _free_subnet()
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
                _ip([f"link add {self.bridge} type bridge",
                     f"link set {self.bridge} alias {self._alias}",
                     f"addr add {self.gateway}/{subnet.prefixlen} dev {self.bridge}",
                     f"link set {self.bridge} up"])
            except _CommandError as exc:
                self.close()
                raise ClusterStartError("could not make the bridge of a netns cluster",
                                        str(exc), ["run: python -m disttest preflight"],
                                        kind="netns-setup") from None
        if removed and events is not None:
            events.emit("warning", message="removed network namespaces and links that "
                        f"ended runs left behind: {', '.join(removed)}")

    # -- nodes and routes ----------------------------------------------------------
    def add_node_boot(self, name: Any) -> dict:
        """Give node ``name`` a namespace and an address (once); what its bootstrap
        changes: ``{"host": address, "exec_prefix": ["ip", "netns", "exec", ns]}``."""
        name = _name(name)
        with self._lock:
            if self._closed:
                raise _closed_error()
            node = self._nodes.get(name) or self._make_node(name)
            return {"host": node.address,
                    "exec_prefix": [_tool("ip"), "netns", "exec", node.namespace]}

    def add_node(self, node: Any) -> None:
        """Make ``node`` known (and give it its namespace) before it has a route."""
        self.add_node_boot(node)

    def address(self, node: Any) -> str:
        """The address of ``node`` in its namespace."""
        self._check_node(_name(node), "address")
        return self._nodes[_name(node)].address

    def namespace(self, node: Any) -> str:
        """The name of the network namespace of ``node`` (for ``ip netns exec``)."""
        self._check_node(_name(node), "namespace")
        return self._nodes[_name(node)].namespace

    def add_route(self, observer: Any, peer: Any, port_name: str,
                  target: tuple[str, int]) -> tuple[str, int]:
        """Nodes dial each other directly: returns ``target``, recorded for ``routes_for``."""
        key = (_name(observer), _name(peer), port_name)
        target = (target[0], int(target[1]))
        with self._lock:
            if self._closed:
                raise _closed_error()
            self._addresses[key] = target
            return target

    # -- faults --------------------------------------------------------------------
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
            _run([_tool("ip"), "netns", "add", node.namespace])
            _ip([f"link add {node.veth} type veth peer name eth0 netns {node.namespace}",
                 f"link set {node.veth} alias {self._alias}",
                 f"link set {node.veth} master {self.bridge}",
                 f"link set {node.veth} up"])
            _ip([f"addr add {node.address}/{self.subnet.prefixlen} dev eth0",
                 "link set eth0 up", "link set lo up",
                 f"rule add pref {TCP_TABLE} ipproto tcp lookup {TCP_TABLE}"],
                netns=node.namespace)
        except _CommandError as exc:
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
        wanted = self._plan(cuts, delays)
        old_rejects = {frozenset(link) for link, mode in self._cuts.items() if mode == "reject"}
        new_rejects = {frozenset(link) for link, mode in cuts.items() if mode == "reject"}
        try:
            for name in sorted(self._tun_users(cuts, delays)):
                self._ensure_tun(self._nodes[name])
            # The line learns the faults before routes send it packets, and keeps
            # releasing what it holds after routes stop doing so.
            self._line.set_faults(cuts, delays)
            for name in sorted(set(wanted) | set(self._installed)):
                self._converge(self._nodes[name], wanted.get(name, {}), force=heal)
            for pair in sorted(map(sorted, new_rejects - old_rejects)):
                self._abort(*pair)
        except _CommandError as exc:
            self._line.set_faults(self._cuts, self._delays)
            raise NetworkModeError(
                f"could not change the routes of a netns cluster: {exc.command}", exc.output,
                ["heal() removes every route this network added",
                 "report it as a disttest bug, with this message"],
                kind="netns-command") from None
        if heal:
            self._line.flush()
        self._cuts, self._delays = cuts, delays

    def _plan(self, cuts: dict, delays: dict) -> dict[str, dict[tuple[str, str], str]]:
        """For each node: ``{(table, peer): ip command}`` that its namespace must hold."""
        wanted: dict[str, dict[tuple[str, str], str]] = {}
        for a, b in set(cuts) | set(delays):
            src, dst = self._nodes[a], self._nodes[b]
            if cuts.get((a, b)) == "reject":
                wanted.setdefault(a, {})[("main", b)] = (
                    f"route replace unreachable {dst.address}/32")
                wanted.setdefault(b, {})[("tcp", a)] = (
                    f"route replace unreachable {src.address}/32 table {TCP_TABLE}")
            else:  # dropped or delayed: through the delay line
                wanted.setdefault(a, {})[("main", b)] = (
                    f"route replace {dst.address}/32 dev {src.tun} src {src.address}")
        return wanted

    def _tun_users(self, cuts: dict, delays: dict) -> set[str]:
        """Nodes whose TUN device the faults use: senders on the line, and receivers
        of delayed packets."""
        users = {a for (a, b) in delays if cuts.get((a, b)) != "reject"}
        users |= {b for (a, b) in delays}
        users |= {a for (a, b), mode in cuts.items() if mode == "drop"}
        return users

    def _converge(self, node: _Node, wanted: dict[tuple[str, str], str], force: bool) -> None:
        have = self._installed.get(node.name, {})
        lines = [self._removal(key) for key in sorted(set(have) - set(wanted))]
        lines += [command for key, command in sorted(wanted.items()) if have.get(key) != command]
        if lines:
            try:
                _ip(lines, netns=node.namespace, force=force, check=not force)
            except _CommandError:
                self._installed.pop(node.name, None)  # unknown now: heal() clears by force
                raise
        self._installed[node.name] = dict(wanted)

    def _removal(self, key: tuple[str, str]) -> str:
        table, peer = key
        where = f" table {TCP_TABLE}" if table == "tcp" else ""
        return f"route del {self._nodes[peer].address}/32{where}"

    def _ensure_tun(self, node: _Node) -> None:
        if node.tun_fd is not None:
            return
        fd = _open_tun(node.tun)
        try:
            _ip([f"link set dev {node.tun} netns {node.namespace}"])
            _ip([f"link set {node.tun} up"], netns=node.namespace)
            # Packets from the line arrive on the TUN device, not on eth0, where a
            # strict reverse-path filter (inherited from the root namespace) drops them.
            conf = "/proc/sys/net/ipv4/conf"
            _run([_tool("ip"), "netns", "exec", node.namespace, "sh", "-c",
                  f"echo 0 > {conf}/all/rp_filter && echo 0 > {conf}/{node.tun}/rp_filter"])
        except BaseException:
            os.close(fd)
            raise
        node.tun_fd = fd
        self._line.add_device(node.name, fd)

    def _abort(self, a: str, b: str) -> None:
        """Abort the TCP connections between a and b, on both ends."""
        for here, there in ((self._nodes[a], self._nodes[b]), (self._nodes[b], self._nodes[a])):
            _run([_tool("ss"), "-N", here.namespace, "-K", "-t", "dst", there.address])

    def _crashed(self, text: str) -> None:
        if self.events is not None:
            self.events.emit("warning", message=f"netns cluster {self.cluster_id}: the delay "
                             "line stopped on an error; dropped and delayed links lose every "
                             "packet now:\n" + text)


class _DelayLine:
    """The thread at the controller's end of every TUN device of one network.

    It reads the packets a namespace routes to its TUN device, discards those of
    a dropped link, holds those of a delayed one, and writes the others (and the
    held ones when due) into the TUN device of the destination's namespace.
    """

    def __init__(self, on_crash) -> None:
        self.on_crash = on_crash
        self.lock = threading.Lock()
        self.names: dict[bytes, str] = {}   # packed IPv4 address -> node name
        self.fds: dict[str, int] = {}       # node name -> its TUN descriptor
        self.pending: list[tuple[str, int]] = []
        self.cuts: dict = {}
        self.delays: dict = {}
        self.queues: dict[tuple[str, str], deque] = {}  # link -> (due, packet), in order
        self.last: dict[tuple[str, str], float] = {}    # link -> due time of its last packet
        self.random = random.Random()
        self.thread: threading.Thread | None = None
        self.stopping = False

    # -- from the network's thread ------------------------------------------------
    def add_address(self, address: str, name: str) -> None:
        with self.lock:
            self.names[socket.inet_aton(address)] = name

    def add_device(self, name: str, fd: int) -> None:
        with self.lock:
            self.fds[name] = fd
            self.pending.append((name, fd))
            if self.thread is None:
                self.selector = selectors.DefaultSelector()
                self.wake_r, self.wake_w = socket.socketpair()
                for sock in (self.wake_r, self.wake_w):
                    sock.setblocking(False)
                self.selector.register(self.wake_r, selectors.EVENT_READ, None)
                self.thread = threading.Thread(target=self.run, name="disttest-netns",
                                               daemon=True)
                self.thread.start()
        self.wake()

    def set_faults(self, cuts: dict, delays: dict) -> None:
        with self.lock:
            self.cuts, self.delays = cuts, delays

    def flush(self) -> None:
        """Release every held packet now (of links not cut)."""
        with self.lock:
            for link, queue in self.queues.items():
                for _due, packet in queue:
                    if link not in self.cuts:
                        self.deliver(link[1], packet)
            self.queues.clear()
            self.last.clear()

    def stop(self) -> None:
        self.stopping = True
        if self.thread is not None:
            self.wake()
            self.thread.join()
            self.selector.close()
            self.wake_r.close()
            self.wake_w.close()
            self.thread = None

    def wake(self) -> None:
        try:
            self.wake_w.send(b"\0")
        except (OSError, AttributeError):  # full (awake anyway), closed, or never started
            pass

    # -- in the thread ------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stopping:
                with self.lock:
                    for name, fd in self.pending:
                        self.selector.register(fd, selectors.EVENT_READ, name)
                    self.pending.clear()
                    timeout = self.next_due()
                for key, _events in self.selector.select(timeout):
                    if key.data is None:
                        try:
                            while self.wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
                    else:
                        self.receive(key.fd, key.data)
                with self.lock:
                    self.release(time.monotonic())
        except BaseException:
            self.on_crash(traceback.format_exc())

    def next_due(self) -> float | None:
        if not self.queues:
            return None
        soonest = min(queue[0][0] for queue in self.queues.values())
        return max(0.0, soonest - time.monotonic())

    def receive(self, fd: int, source: str) -> None:
        packets = []
        for _ in range(256):  # then let the other devices have their turn
            try:
                packets.append(os.read(fd, 65536))
            except BlockingIOError:
                break
            except OSError:  # the device is gone: the network is closing
                break
        now = time.monotonic()
        with self.lock:
            for packet in packets:
                self.route(source, packet, now)

    def route(self, source: str, packet: bytes, now: float) -> None:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return  # not IPv4: nothing a node sent to a peer
        target = self.names.get(packet[16:20])
        link = (source, target)
        if target is None or link in self.cuts:
            return  # dropped (a rejected link never routes here)
        delay = self.delays.get(link)
        queue = self.queues.get(link)
        if delay is None and not queue:
            self.deliver(target, packet)
            return
        due = self.last.get(link, 0.0)
        if delay is not None:
            seconds, jitter = delay
            if jitter:
                seconds += self.random.uniform(-jitter, jitter)
            due = max(due, now + seconds)  # never ahead of the packet before it
        self.last[link] = due
        if queue is None:
            queue = self.queues[link] = deque()
        queue.append((due, packet))

    def release(self, now: float) -> None:
        for link in list(self.queues):
            queue = self.queues[link]
            while queue and queue[0][0] <= now:
                packet = queue.popleft()[1]
                if link not in self.cuts:
                    self.deliver(link[1], packet)
            if not queue:
                del self.queues[link]

    def deliver(self, target: str, packet: bytes) -> None:
        fd = self.fds.get(target)
        if fd is not None:
            try:
                os.write(fd, packet)
            except OSError:  # the device is gone, or refuses the packet: it is lost
                pass


# -- small helpers -----------------------------------------------------------------------


def _closed_error() -> NetworkModeError:
    return NetworkModeError("the netns network is closed",
                            "close() was called, or its cluster was stopped",
                            ["acquire a new cluster"])
