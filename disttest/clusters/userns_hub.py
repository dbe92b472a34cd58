"""The hub of an unprivileged netns network (``network = "userns"``).

Runs as ``unshare --user --map-root-user --net --mount python -c ...``: in a
user namespace of the controller's own uid, where it is root, with a network
namespace (the hub namespace, which holds the bridge) and a mount namespace
(where ``ip netns`` keeps the node namespaces, on a tmpfs of its own) that
belong to it. The controller cannot enter them (a threaded process cannot
join a user namespace), so it asks the hub, over a SEQPACKET socket:

* ``run``: run a command here (``ip``, ``ss``) and return its output;
* ``socket``: make a socket in the hub namespace and pass its descriptor back:
  a socket stays in the namespace it was made in, so the controller connects
  to the nodes through it with no hop in between;
* ``packet``: a packet socket on a hub-side veth, the delay line's device;
  ``no_offload``: make a veth send whole, checksummed frames, as a TUN device does.

When the controller's end closes (a normal close, or a controller killed by
SIGKILL), the hub kills every process left in a node namespace and exits; the
namespaces, links and routes end with their last process. Standard library
only: this runs as its own small process.
"""
from __future__ import annotations

import array
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

ETH_P_IP = 0x0800
_SIOCETHTOOL = 0x8946
_ETHTOOL_STXCSUM, _ETHTOOL_SSG, _ETHTOOL_STSO, _ETHTOOL_SGSO = 0x17, 0x19, 0x1F, 0x24
_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


def main(fd: int) -> None:
    """Serve the controller on descriptor ``fd`` until it closes its end."""
    chan = socket.socket(fileno=fd)
    try:
        _prepare()
    except Exception as exc:  # the controller says why the mode cannot start
        _send(chan, {"error": f"{type(exc).__name__}: {exc}"})
        return
    _send(chan, {"ready": os.getpid()})
    try:
        while True:
            try:
                data = chan.recv(1 << 20)
            except OSError:
                break
            if not data:
                break
            fds: list[int] = []
            try:
                reply, fds = _handle(json.loads(data))
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            try:
                _send(chan, reply, fds)
            finally:
                for descriptor in fds:
                    os.close(descriptor)
    finally:
        _kill_everyone()


def _prepare() -> None:
    # ``ip netns`` keeps its namespaces in /run/netns, which belongs to the real root:
    # a tmpfs of this mount namespace takes its place here, and nowhere else.
    target = "/run/netns" if os.path.isdir("/run/netns") else "/run"
    _run([_tool("mount"), "-t", "tmpfs", "-o", "mode=755", "disttest", target])
    if target == "/run":
        os.mkdir("/run/netns")
    # The hub's addresses are loopback addresses of 127.214.0.0/24 (clusters/userns.py):
    # its own loopback keeps 127.0.0.1 only, and route_localnet routes the others.
    _run([_tool("ip"), "link", "set", "lo", "up"])
    _run([_tool("ip"), "addr", "del", "127.0.0.1/8", "dev", "lo"])
    _run([_tool("ip"), "addr", "add", "127.0.0.1/32", "dev", "lo"])
    with open("/proc/sys/net/ipv4/conf/all/route_localnet", "w") as f:
        f.write("1")


def _handle(request: dict) -> tuple[dict, list[int]]:
    op = request.get("op")
    if op == "run":
        argv = list(request["argv"])
        argv[0] = _tool(argv[0])
        done = subprocess.run(argv, input=request.get("stdin"), capture_output=True,
                              text=True, timeout=30)
        return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}, []
    if op == "socket":
        sock = socket.socket(int(request["family"]), int(request["type"]))
        return {}, [sock.detach()]
    if op == "no_offload":
        _no_offload(request["ifname"])
        return {}, []
    if op == "packet":
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        try:
            sock.bind((request["ifname"], ETH_P_IP))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return {}, [sock.detach()]
    raise ValueError(f"unknown request {op!r}")


def _no_offload(ifname: str) -> None:
    """Turn off checksum offload, scatter-gather, TSO and GSO on ``ifname``, so that
    what it sends is whole: frames no larger than the MTU with their checksums
    computed, which the delay line can write back into another device as they are."""
    import ctypes
    import fcntl
    import struct

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for command in (_ETHTOOL_STXCSUM, _ETHTOOL_SSG, _ETHTOOL_STSO, _ETHTOOL_SGSO):
            value = ctypes.create_string_buffer(struct.pack("II", command, 0), 8)
            request = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
            try:
                fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, request.ljust(40, b"\0"))
            except OSError as exc:
                if command == _ETHTOOL_STXCSUM:  # the one that matters
                    raise RuntimeError(f"cannot turn off checksum offload on {ifname}: "
                                       f"{exc}") from None
    finally:
        sock.close()


def _send(chan: socket.socket, reply: dict, fds: list[int] = ()) -> None:
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    chan.sendmsg([json.dumps(reply).encode()], ancillary)


def _kill_everyone() -> None:
    """SIGKILL every process still in a node namespace: nothing outlives the hub."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        try:
            listing = _run([_tool("ip"), "netns", "pids", name])
        except Exception:
            continue
        for pid in listing.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ValueError, OSError):
                pass


def _tool(name: str) -> str:
    return shutil.which(name, path=_PATH) or name


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


if __name__ == "__main__":
    main(int(sys.argv[1]))
