"""Network namespaces without root (``network = "userns"``).

The same network as ``network = "netns"`` (clusters/netns.py): every node in a
network namespace of its own with its own address, on a bridge, faults as
routes and a delay line. Here it all lives inside a user namespace of the
controller's own uid, which an unprivileged process may create where the
kernel allows it (``unshare -Urn``): a user namespace owns the network
namespaces made in it, so its root may add links and routes there, with no
privilege on the machine.

Things that don't work, and what is done instead:

* The controller cannot join the namespaces: a process with threads cannot
  enter a user namespace. Solution: a hub process is born in them
  (clusters/userns_hub.py) and runs commands for the controller; node
  processes enter them with ``nsenter`` before the agent starts.
* The test process cannot reach a node's address: the bridge is in the hub
  namespace, not in the machine's. (The addresses are loopback ones, so one
  dialed by mistake stays on the machine.) Solution: the hub makes sockets in its
  namespace and passes their descriptors back; ``Node.connect()`` and the
  controller's own calls connect through them, at the cost of one request to
  the hub per new connection and none per byte.
* /dev/net/tun is often closed to ordinary users (mode 0600), and netem,
  dummy devices and iptables are kernel options a small kernel leaves out.
  Solution: a node's line device is a veth whose far end is read and written
  by a packet socket made by the hub; the controller's delay line handles the
  frames as it handles TUN packets.
* Leftovers: nothing is named on the machine. The namespaces end with their
  last process; the hub exits when the controller's end of its socket closes
  (also when the controller is killed) and kills what is left in them first.
"""
from __future__ import annotations

import array
import contextlib
import functools
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from disttest.clusters.netns_host import CommandError, find_tool, kill_listed
from disttest.errors import ClusterStartError

__all__ = ["UserHost", "unavailable", "SUBNET"]

# Loopback addresses, routed between the namespaces (route_localnet): private to
# each hub, and to the machine they are its own loopback, so a test that dials a
# node's address by mistake reaches this machine, never another one.
SUBNET = ipaddress.ip_network("127.214.0.0/24")
LOCALNET = ("ip link set lo up && ip addr del 127.0.0.1/8 dev lo && "
            "ip addr add 127.0.0.1/32 dev lo && "
            "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet")
START_TIMEOUT = 30.0
_HUB = str(Path(__file__).with_name("userns_hub.py"))
_UNSHARE = ["--user", "--map-root-user", "--net", "--mount", "--propagation", "private"]


@functools.lru_cache(maxsize=None)
def unavailable() -> str | None:
    """None when the unprivileged mode can work here, else why not (one sentence)."""
    if not sys.platform.startswith("linux"):
        return f"user and network namespaces exist on Linux only, and this is {sys.platform}"
    for tool in ("unshare", "nsenter", "mount", "ip", "ss"):
        if find_tool(tool) is None:
            return f"the {tool!r} command is not installed (util-linux, iproute2)"
    probe = "ip link add disttest0 type veth peer name disttest1 && ip link del disttest0"
    try:
        done = subprocess.run([find_tool("unshare"), *_UNSHARE, "sh", "-c", probe],
                              capture_output=True, text=True, timeout=START_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare --user --net` could not run: {exc}"
    if done.returncode:
        said = (done.stderr or done.stdout).strip().splitlines()
        return ("this kernel refuses unprivileged user namespaces "
                f"({said[-1] if said else 'unshare failed'}); see "
                "kernel.unprivileged_userns_clone, user.max_user_namespaces and "
                "kernel.apparmor_restrict_unprivileged_userns")
    return None


class UserHost:
    """Where a netns network lives without root: the namespaces of one hub process."""

    mode = "userns"
    refusal_steps = ['declare network = "auto": it picks the strongest mode this machine '
                     'allows (the "proxy" mode needs no namespaces at all)',
                     "or allow unprivileged user namespaces (sysctl "
                     "kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)"]

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self._chan: socket.socket | None = None
        self._lock = threading.Lock()  # one request at a time on the channel

    def unavailable(self) -> str | None:
        return unavailable()

    def start(self) -> None:
        """Start the hub; returns once it is ready."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [find_tool("unshare"), *_UNSHARE, sys.executable, "-I", _HUB,
                 str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            ours.close()
            raise self._start_error(str(exc)) from None
        finally:
            theirs.close()
        self._chan = ours
        ours.settimeout(START_TIMEOUT)
        try:
            reply = json.loads(ours.recv(1 << 16) or b"{}")
        except (OSError, ValueError) as exc:
            reply = {"error": str(exc)}
        if "ready" not in reply:
            stderr = self._hub_stderr()
            self.close()
            raise self._start_error(reply.get("error") or stderr or "the hub exited")
        self.pid = reply["ready"]
        ours.settimeout(None)

    def _hub_stderr(self) -> str:
        """What a hub that failed to start said (it is ended first, so reading never waits)."""
        try:
            self.process.kill()
            _, err = self.process.communicate(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return ""
        return (err or b"").decode(errors="replace").strip()

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> str:
        reply, _fds = self._call({"op": "run", "argv": list(argv), "stdin": stdin})
        if check and reply["rc"]:
            raise CommandError(" ".join(argv), (reply["err"] or reply["out"]).strip())
        return reply["out"]

    def prepare_namespace(self, namespace: str) -> None:
        """Let ``namespace`` route the loopback addresses of SUBNET on its links: its own
        loopback keeps only 127.0.0.1, and route_localnet lets 127.x leave on eth0."""
        self.run(["ip", "netns", "exec", namespace, "sh", "-c", LOCALNET])

    def subnet_lock(self):
        return contextlib.nullcontext()  # the subnet is private to this hub

    def remove_leftovers(self) -> list[str]:
        return []  # nothing of a hub outlives it

    def free_subnet(self) -> ipaddress.IPv4Network:
        return SUBNET

    def open_line(self, namespace: str, device: str, index: int) -> tuple[int, bytes]:
        """A veth: ``device`` in ``namespace``, its far end in the hub namespace, read
        and written by a packet socket; returns that socket's descriptor and the
        Ethernet header of a frame that takes a packet into ``namespace``."""
        far = "dth" + device[3:]
        node_mac, hub_mac = _mac(0, index), _mac(1, index)
        self.run(["ip", "link", "add", far, "address", hub_mac, "type", "veth", "peer", "name",
                  device, "address", node_mac])
        # Offloads would hand the line packets with checksums left to the device.
        self._call({"op": "no_offload", "ifname": device})
        self.run(["ip", "link", "set", device, "netns", namespace])
        self.run(["ip", "link", "set", far, "up"])
        # No ARP on the line: a node sends to it as to a wire; no reverse-path filter,
        # as packets from a peer arrive on it rather than on eth0.
        conf = "/proc/sys/net/ipv4/conf"
        self.run(["ip", "netns", "exec", namespace, "sh", "-c",
                  f"ip link set {device} arp off && ip link set {device} up && "
                  f"echo 0 > {conf}/all/rp_filter && echo 0 > {conf}/{device}/rp_filter"])
        _reply, fds = self._call({"op": "packet", "ifname": far})
        header = bytes.fromhex(node_mac.replace(":", "") + hub_mac.replace(":", "")) + b"\x08\x00"
        return fds[0], header

    def exec_prefix(self, namespace: str) -> list[str]:
        """``nsenter`` into the hub's user namespace and the node's network namespace
        (found through the hub's mount namespace)."""
        return [find_tool("nsenter"), "--preserve-credentials", f"--user=/proc/{self.pid}/ns/user",
                f"--net=/proc/{self.pid}/root/run/netns/{namespace}", "--"]

    def kill_inside(self, namespace: str) -> list[int]:
        return kill_listed(self.run(["ip", "netns", "pids", namespace], check=False))

    def dial(self, address: tuple[str, int], timeout: float | None) -> socket.socket:
        """Connect from the hub namespace, where the bridge is, with a socket made there."""
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        try:
            _reply, fds = self._call({"op": "socket", "family": int(family),
                                      "type": int(socket.SOCK_STREAM)})
        except CommandError as exc:  # as a failed connect, which callers handle
            raise ConnectionError(f"cannot reach {address[0]}: {exc.output}") from None
        sock = socket.socket(fileno=fds[0])
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Close the channel: the hub kills what is left in its namespaces and exits."""
        if self._chan is not None:
            self._chan.close()
        process = self.process
        if process is not None:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()

    # -- the channel ------------------------------------------------------------------
    def _call(self, request: dict) -> tuple[dict, list[int]]:
        with self._lock:
            if self._chan is None or self._chan.fileno() < 0:
                raise CommandError(request.get("op", "?"), "the namespace hub is not running")
            try:
                self._chan.send(json.dumps(request).encode())
                data, ancillary, _flags, _addr = self._chan.recvmsg(
                    1 << 20, socket.CMSG_SPACE(4 * 4))
            except OSError as exc:
                raise CommandError(request.get("op", "?"),
                                   f"the namespace hub is gone: {exc}") from None
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", payload[:len(payload) - len(payload) % 4]).tolist()
        if not data:
            raise CommandError(request.get("op", "?"), "the namespace hub exited")
        reply = json.loads(data)
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise CommandError(" ".join(request.get("argv", [request.get("op", "?")])),
                               reply["error"])
        return reply, fds

    def _start_error(self, why: str) -> ClusterStartError:
        return ClusterStartError("could not start the namespaces of a userns cluster", why,
                                 self.refusal_steps + ["run: python -m disttest preflight"],
                                 kind="userns-setup")


def _mac(side: int, index: int) -> str:
    """A locally administered address, unique on its veth pair."""
    return f"02:64:74:{side:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"
