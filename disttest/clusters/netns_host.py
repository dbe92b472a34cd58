"""The machine side of the netns mode: can it run here, commands, names, leftovers.

Everything here acts on the root network namespace or runs iproute2's ``ip``
and ``ss``: whether namespaces can be made (``unavailable``), the lock and the
free subnet shared by every controller of the machine, the owner names that
let a later run remove what a killed one left behind (``cleanup_leftovers``),
and the TUN devices of the delay line.
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from typing import Callable, Iterator

from disttest.errors import NetworkModeError

__all__ = ["SUBNETS", "TCP_TABLE", "NS_PREFIX", "ALIAS", "CommandError", "unavailable",
           "cleanup_leftovers", "remove_leftovers", "kill_inside", "kill_listed", "owner_name", "start_time",
           "machine_lock", "free_subnet", "find_tool", "run_command", "ip_batch", "open_tun"]

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
        if find_tool(tool) is None:
            return f"the {tool!r} command of iproute2 is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (a kernel without CONFIG_TUN, or an incomplete /dev)"
    probe = f"{NS_PREFIX}{owner_name()}-probe{secrets.token_hex(2)}"
    try:
        run_command([find_tool("ip"), "netns", "add", probe])
    except CommandError as exc:
        return f"`ip netns add` fails: {exc.output}"
    finally:
        run_command([find_tool("ip"), "netns", "del", probe], check=False)
    return None


def cleanup_leftovers() -> list[str]:
    """Remove the namespaces and links of netns networks whose controller no
    longer runs (killed before it could clean up); returns their names."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or find_tool("ip") is None:
        return []
    with machine_lock():
        try:
            return remove_leftovers()
        except CommandError as exc:
            raise NetworkModeError("could not list network namespaces and links", str(exc),
                                   ["check that `ip netns list` and `ip -j link` work"],
                                   kind="netns-command") from None


def remove_leftovers() -> list[str]:
    removed: list[str] = []
    lines: list[str] = []
    for link in json.loads(run_command([find_tool("ip"), "-j", "link", "show"]) or "[]"):
        parts = link.get("ifalias", "").split(":")
        if parts[0] == ALIAS and len(parts) > 1 and not _owner_alive(parts[1]):
            lines.append(f"link del {link['ifname']}")
            removed.append(link["ifname"])
    for namespace in _namespaces():
        if namespace.startswith(NS_PREFIX):
            owner = namespace[len(NS_PREFIX):].split("-", 1)[0]
            if not _owner_alive(owner):
                kill_inside(namespace)
                lines.append(f"netns del {namespace}")
                removed.append(namespace)
    if lines:
        ip_batch(lines, force=True, check=False)
    return removed


def _namespaces() -> list[str]:
    listing = run_command([find_tool("ip"), "netns", "list"])
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def kill_inside(namespace: str) -> list[int]:
    """SIGKILL every process of ``namespace``; their pids."""
    return kill_listed(run_command([find_tool("ip"), "netns", "pids", namespace], check=False))


def kill_listed(listing: str) -> list[int]:
    """SIGKILL the processes ``ip netns pids`` listed; their pids."""
    pids = [int(p) for p in listing.split() if p.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def owner_name(pid: int | None = None) -> str:
    """``<pid>.<start time>``: names one process, where a pid alone is reused."""
    pid = os.getpid() if pid is None else pid
    start = start_time(pid)
    return str(pid) if start is None else f"{pid}.{start}"


def start_time(pid: int) -> int | None:
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
    running = start_time(int(pid))
    return running is not None and (not start or start == str(running))


@contextmanager
def machine_lock() -> Iterator[None]:
    """Serializes subnet choice and leftover removal between controllers."""
    folder = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    fd = os.open(os.path.join(folder, "disttest-netns.lock"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def free_subnet() -> ipaddress.IPv4Network | None:
    """A /24 of SUBNETS that no address or route of this machine touches."""
    ip = find_tool("ip")
    used: list[ipaddress.IPv4Network] = []
    for link in json.loads(run_command([ip, "-j", "-4", "addr", "show"]) or "[]"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.ip_network(info["local"]))
            used.append(ipaddress.ip_network(f"{info['local']}/{info.get('prefixlen', 32)}",
                                             strict=False))
    routes = run_command([ip, "-j", "-4", "route", "show", "table", "all"])
    for route in json.loads(routes or "[]"):
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
class CommandError(Exception):
    def __init__(self, command: str, output: str) -> None:
        super().__init__(f"{command}: {output}")
        self.command, self.output = command, output


def find_tool(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def run_command(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    """Run ``argv`` (a bare ``ip`` or ``ss`` is looked up in the sbin directories too);
    its output, or CommandError."""
    if argv and "/" not in argv[0]:
        argv = [find_tool(argv[0]) or argv[0]] + list(argv[1:])
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(" ".join(map(str, argv)), str(exc)) from None
    if check and done.returncode:
        raise CommandError(" ".join(argv), (done.stderr or done.stdout).strip())
    return done.stdout


def ip_batch(lines: list[str], netns: str | None = None, force: bool = False,
             check: bool = True, run: Callable[..., str] | None = None) -> None:
    """Run ``lines`` as one ``ip -batch`` (in ``netns``), through ``run`` (default:
    ``run_command`` here); an error names the failing line."""
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else [])
    try:
        (run or run_command)(argv + ["-batch", "-"], "\n".join(lines) + "\n", check)
    except CommandError as exc:
        where = re.search(r"Command failed -:(\d+)", exc.output)
        line = lines[int(where.group(1)) - 1] if where else "; ".join(lines)
        prefix = f"ip -n {netns} " if netns else "ip "
        raise CommandError(prefix + line, exc.output.split("\nCommand failed")[0]) from None


def open_tun(name: str) -> int:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CommandError("open /dev/net/tun", str(exc)) from None
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise CommandError(f"TUNSETIFF {name}", str(exc)) from None
    return fd



class RootHost:
    """Where a netns network lives when this process is root: the machine's own root
    namespace. Namespaces are named (``ip netns``), the bridge is reachable from
    here, and the delay line's devices are TUN devices."""

    mode = "netns"
    refusal_steps = ["run the tests as root on Linux, with iproute2 (ip, ss) installed",
                     'or declare network = "auto": it picks the strongest mode this '
                     "machine allows"]

    def unavailable(self) -> str | None:
        return unavailable()

    def start(self) -> None:
        """Nothing to start: the root namespace is there."""

    def prepare_namespace(self, namespace: str) -> None:
        """Nothing to prepare: addresses of 10.213.0.0/16 need no setting."""

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> str:
        return run_command(argv, stdin, check)

    def subnet_lock(self):
        return machine_lock()

    def remove_leftovers(self) -> list[str]:
        return remove_leftovers()

    def free_subnet(self) -> ipaddress.IPv4Network | None:
        return free_subnet()

    def open_line(self, namespace: str, device: str, index: int) -> tuple[int, bytes]:
        """A TUN device called ``device`` in ``namespace``: its descriptor, and the
        header the delay line puts before a packet it writes (none)."""
        fd = open_tun(device)
        try:
            ip_batch([f"link set dev {device} netns {namespace}"])
            ip_batch([f"link set {device} up"], netns=namespace)
            # Packets from the line arrive on the TUN device, not on eth0, where a
            # strict reverse-path filter (inherited from the root namespace) drops them.
            conf = "/proc/sys/net/ipv4/conf"
            run_command(["ip", "netns", "exec", namespace, "sh", "-c",
                         f"echo 0 > {conf}/all/rp_filter && echo 0 > {conf}/{device}/rp_filter"])
        except BaseException:
            os.close(fd)
            raise
        return fd, b""

    def exec_prefix(self, namespace: str) -> list[str]:
        """What a node's command starts with to run in ``namespace``."""
        return [find_tool("ip"), "netns", "exec", namespace]

    def kill_inside(self, namespace: str) -> list[int]:
        return kill_inside(namespace)

    def dial(self, address: tuple[str, int], timeout: float | None) -> socket.socket:
        """The bridge is in this namespace: connect straight."""
        return socket.create_connection(address, timeout)

    def close(self) -> None:
        """Nothing to stop."""
