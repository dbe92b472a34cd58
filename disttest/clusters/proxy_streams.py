"""The proxy's data path: connections, their buffers and delays, and the poller.

``Forwarder`` moves the bytes of every proxied connection of one network: a
chunk read on one side goes straight to the other when nothing is buffered,
delayed or cut in its direction (``pass_on``), else it is buffered, queued
with its release time, or held (``forward``, ``flush``, ``release_due``); each
socket is registered for exactly what it can do (``update``). ``ProxyLoop``
(clusters/proxy_loop.py) is the thread that drives it. Everything here runs in
that thread.
"""
from __future__ import annotations

import random
import select
import selectors
import socket
import struct
import time
from collections import deque
from typing import Any

from disttest.errors import NetworkModeError

__all__ = ["Forwarder", "Route", "Held", "Conn", "Poller", "READ", "WRITE", "TROUBLE",
           "HANG_UP", "reset", "family", "closed_error"]

CHUNK = 256 * 1024          # bytes read per recv_into
HIGH_WATER = 1024 * 1024    # stop reading a side whose way out holds more than this
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset

if hasattr(select, "epoll"):
    READ, WRITE = select.EPOLLIN, select.EPOLLOUT
    TROUBLE = select.EPOLLERR | select.EPOLLHUP
    HANG_UP = getattr(select, "EPOLLRDHUP", 0)  # the client closed, seen without reading
else:
    READ, WRITE, TROUBLE, HANG_UP = selectors.EVENT_READ, selectors.EVENT_WRITE, 0, 0


class Route:
    __slots__ = ("observer", "peer", "target", "listener", "address", "held")

    def __init__(self, observer: str, peer: str, target: tuple[str, int],
                 listener: socket.socket) -> None:
        self.observer, self.peer, self.target = observer, peer, target
        self.listener = listener
        self.address = tuple(listener.getsockname()[:2])
        self.held: list[socket.socket] = []  # accepted while cut in "drop" mode


class Held:
    """A connection accepted while cut in "drop" mode, watched only for its end."""

    __slots__ = ("route", "sock")

    def __init__(self, route: Route, sock: socket.socket) -> None:
        self.route, self.sock = route, sock


class Conn:
    """One proxied connection. Side 0 is the client (observer), side 1 the server.

    Direction ``d`` reads side ``d`` and writes side ``1 - d``: d=0 is the link
    observer→peer, d=1 the link peer→observer.
    """

    __slots__ = ("links", "socks", "fds", "connecting", "out", "queue", "queued",
                 "last_release", "eof", "shut", "frozen", "was_cut", "masks", "direct")

    def __init__(self, route: Route, client: socket.socket, server: socket.socket) -> None:
        self.links = ((route.observer, route.peer), (route.peer, route.observer))
        self.socks = (client, server)
        self.fds = (client.fileno(), server.fileno())
        self.connecting = True
        self.out = (bytearray(), bytearray())         # released, waiting for the socket
        self.queue = (deque(), deque())               # delayed: (release time, bytes)
        self.queued = [0, 0]
        self.last_release = [0.0, 0.0]
        self.eof = [False, False]     # the reading side of direction d said EOF
        self.shut = [False, False]    # direction d is finished (shutdown sent)
        self.frozen = [False, False]  # direction d is cut in "drop" mode
        self.was_cut = False
        self.masks = [0, 0]
        # direct[d]: nothing buffered, queued, delayed or cut in direction d, so a
        # chunk read can be sent on at once (kept up to date by Forwarder.update)
        self.direct = [False, False]



class Forwarder:
    """Every proxied connection of one network, and the faults as applied to them."""

    def __init__(self, cuts: dict, delays: dict) -> None:
        self.cuts, self.delays = cuts, delays
        self.conns: set[Conn] = set()
        self.timed: set[Conn] = set()  # connections with delayed chunks
        self.random = random.Random()
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.poller = Poller()
        # fd -> what it is: (conn, side), a Route (listener), a Held, or "wake"
        self.handlers: dict[int, Any] = {}

    def pass_on(self, conn: Conn, side: int) -> None:
        """The common case, kept short: a chunk that can go straight through."""
        try:
            n = conn.socks[side].recv_into(self.buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(conn, rst=True)
            return
        if n:
            try:
                sent = conn.socks[1 - side].send(self.view[:n])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close(conn, rst=True)
                return
            if sent == n:
                return
            conn.out[side].extend(self.view[sent:n])
        else:
            conn.eof[side] = True
            if not self.flush(conn, side):
                return
        self.update(conn)

    def on_ready(self, conn: Conn, side: int, events: int) -> None:
        if events & TROUBLE:
            events |= READ | WRITE
        mask = events & conn.masks[side]  # act only on what the socket is registered for
        if not mask:  # closed earlier in this batch of events
            return
        if mask & WRITE:
            if side == 1 and conn.connecting:
                if conn.socks[1].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self.close(conn, rst=True)  # the peer's port is closed: reset the client
                    return
                conn.connecting = False
            if not self.flush(conn, 1 - side):
                return
        if mask & READ:
            try:
                n = conn.socks[side].recv_into(self.buf)
            except (BlockingIOError, InterruptedError):
                n = -1
            except OSError:
                self.close(conn, rst=True)
                return
            if n == 0:
                conn.eof[side] = True
                if not self.flush(conn, side):
                    return
            elif n > 0 and not self.forward(conn, side, self.view[:n]):
                return
        self.update(conn)

    def forward(self, conn: Conn, d: int, data: memoryview) -> bool:
        """Send, buffer or delay a chunk read in direction d. False: conn is gone."""
        delay = self.delays.get(conn.links[d]) if self.delays else None
        queue = conn.queue[d]
        if delay is not None or queue:  # queued chunks keep their order
            at = conn.last_release[d]
            if delay is not None:
                seconds, jitter = delay
                if jitter:
                    seconds += self.random.uniform(-jitter, jitter)
                at = max(at, time.monotonic() + seconds)
            conn.last_release[d] = at
            queue.append((at, bytes(data)))
            conn.queued[d] += len(data)
            self.timed.add(conn)
            return True
        out = conn.out[d]
        if out or conn.frozen[d] or (d == 0 and conn.connecting):
            out.extend(data)
            return True
        try:
            sent = conn.socks[1 - d].send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close(conn, rst=True)
            return False
        if sent < len(data):
            out.extend(data[sent:])
        return True

    def flush(self, conn: Conn, d: int) -> bool:
        """Write what direction d has released; finish it after EOF. False: conn is gone."""
        if conn.frozen[d] or (d == 0 and conn.connecting):
            return True
        out, dst = conn.out[d], conn.socks[1 - d]
        while out:
            try:
                sent = dst.send(out)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self.close(conn, rst=True)
                return False
            del out[:sent]
        if conn.eof[d] and not conn.queue[d] and not conn.shut[d]:
            conn.shut[d] = True  # pass the half-close on
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if conn.shut[1 - d]:
                self.close(conn)
                return False
        return True

    def release_due(self) -> None:
        now = time.monotonic()
        for conn in list(self.timed):
            gone = False
            for d in (0, 1):
                queue = conn.queue[d]
                if not queue or conn.frozen[d] or queue[0][0] > now:
                    continue
                while queue and queue[0][0] <= now:
                    chunk = queue.popleft()[1]
                    conn.queued[d] -= len(chunk)
                    conn.out[d].extend(chunk)
                if not self.flush(conn, d):
                    gone = True
                    break
            if not gone:
                if not (conn.queue[0] or conn.queue[1]):
                    self.timed.discard(conn)
                self.update(conn)

    def update(self, conn: Conn) -> None:
        """Register each socket of ``conn`` for exactly what it can do now."""
        for side in (0, 1):
            if side == 1 and conn.connecting:
                mask = WRITE
            else:
                mask = 0
                if (not conn.eof[side] and not conn.frozen[side]
                        and len(conn.out[side]) + conn.queued[side] < HIGH_WATER):
                    mask = READ
                other = 1 - side
                if conn.out[other] and not conn.frozen[other] and not (
                        other == 0 and conn.connecting):
                    mask |= WRITE
            conn.direct[side] = bool(
                mask & READ and not conn.out[side] and not conn.queue[side]
                and not (side == 0 and conn.connecting) and conn.links[side] not in self.delays)
            old = conn.masks[side]
            if mask != old:
                fd = conn.fds[side]
                if not old:
                    self.poller.register(fd, mask)
                    self.handlers[fd] = (conn, side)
                elif not mask:
                    self.poller.unregister(fd)
                    del self.handlers[fd]
                else:
                    self.poller.modify(fd, mask)
                conn.masks[side] = mask

    def close(self, conn: Conn, rst: bool = False) -> None:
        self.conns.discard(conn)
        self.timed.discard(conn)
        conn.direct = [False, False]
        for side in (0, 1):
            if conn.masks[side]:
                self.poller.unregister(conn.fds[side])
                del self.handlers[conn.fds[side]]
                conn.masks[side] = 0
            if rst:
                reset(conn.socks[side])
            else:
                conn.socks[side].close()



class Poller:
    """epoll where there is one, else the platform's selector, behind epoll's calls."""

    def __init__(self) -> None:
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            self.register, self.modify = self._epoll.register, self._epoll.modify
            self.unregister, self.close = self._epoll.unregister, self._epoll.close
            self.poll = self._poll_epoll
        else:
            self._sel = selectors.DefaultSelector()
            self.register, self.modify = self._sel.register, self._sel.modify
            self.unregister, self.close = self._sel.unregister, self._sel.close
            self.poll = self._poll_selector

    def _poll_epoll(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._epoll.poll(-1 if timeout is None else timeout)

    def _poll_selector(self, timeout: float | None) -> list[tuple[int, int]]:
        return [(key.fd, events) for key, events in self._sel.select(timeout)]



def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    except OSError:
        pass
    sock.close()


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET




def closed_error(crash: str = "") -> NetworkModeError:
    if crash:
        return NetworkModeError(
            "the network proxy stopped on an error", crash.strip().splitlines()[-1],
            ["report it as a disttest bug, with the traceback in remote_traceback",
             "acquire a new cluster"], remote_traceback=crash)
    return NetworkModeError("the network proxy is closed",
                            "close() was called, or its cluster was stopped",
                            ["acquire a new cluster"])
