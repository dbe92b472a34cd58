"""Network faults without privileges: TCP proxies owned by the controller.

With ``network = "proxy"`` a node never connects to a peer's port directly.
For every (observer, peer, port name) the controller listens on a port of its
own and forwards what the observer sends to the peer's real port. Because the
proxy knows which link every byte travels on, it can partition the network,
cut a link one way, and add latency, as an ordinary user.

Directed links: X→Y carries the bytes flowing from node X to node Y. On a
connection made by observer X through route (X, Y, port), client→server bytes
travel X→Y and server→client bytes travel Y→X.

Things that don't work, and what is done instead:

* A thread per connection direction costs a GIL hand-off on every hop
  (measured: slower than one loop), and sleeping in a reading loop to add
  latency stalls the stream. Solution: one event-loop thread per network,
  non-blocking sockets on epoll (any selector elsewhere), write buffers with
  backpressure, and delayed chunks timestamped into a release queue per
  connection direction.
* Changing fault state from the test thread while the loop forwards bytes
  races with it. Solution: every change runs *in* the loop (a command list
  and a wake-up socketpair); the caller waits until it has been applied, so
  when ``partition()`` returns no further byte crosses the cut.
* A cut connection cannot be resumed honestly: the bytes a real network would
  have lost are gone, so both ends disagree about the stream. Solution: a
  connection that was ever cut in "drop" mode is reset as soon as none of its
  directions is cut any more (``heal()``, or a new partition that no longer
  separates its nodes); clients reconnect, as they would after a real network
  timed the connection out.
* Every proxied hop costs a thread wake-up and three system calls
  (``epoll_wait``, ``recv``, ``send``); on loopback that is most of a round
  trip, in C as in Python. Polling without sleeping for a while after
  activity (``spin``) saves the wake-up on an idle machine, but on a busy one
  it takes the CPU the nodes need and makes round trips slower (measured in
  docs/performance.md), so it is off unless asked for.
"""
from __future__ import annotations

import errno
import random
import select
import selectors
import socket
import struct
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable

from disttest.clusters.faults import MODES, FaultRules, NetworkFaultError, _name
from disttest.errors import NetworkModeError

__all__ = ["ProxyNetwork", "NetworkFaultError", "MODES"]

CHUNK = 256 * 1024          # bytes read per recv_into
HIGH_WATER = 1024 * 1024    # stop reading a side whose way out holds more than this
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset

if hasattr(select, "epoll"):
    READ, WRITE = select.EPOLLIN, select.EPOLLOUT
    _TROUBLE = select.EPOLLERR | select.EPOLLHUP
    _HANG_UP = getattr(select, "EPOLLRDHUP", 0)  # the client closed, seen without reading
else:
    READ, WRITE, _TROUBLE, _HANG_UP = selectors.EVENT_READ, selectors.EVENT_WRITE, 0, 0



class ProxyNetwork(FaultRules):
    """All proxies of one cluster, and the faults currently applied.

    Fault methods may be called from any thread; each returns once its change
    is in force. ``events``: an event bus; the only event emitted is a
    "warning" if the proxy thread stops on an error. ``spin``: seconds the loop
    keeps polling without sleeping after activity (0: always sleep).
    """

    _members = "faults apply to the nodes whose traffic goes through this proxy network"
    _self_traffic = "a node's traffic to itself does not go through the proxy"
    _reject = "connections fail at once with a reset"

    def __init__(self, host: str = "127.0.0.1", events=None, spin: float = 0.0) -> None:
        self.host = host
        self.events = events
        self.spin = float(spin)
        self._lock = threading.Lock()  # held through every change: they apply one at a time
        self._nodes: set[str] = set()
        self._addresses: dict[tuple[str, str, str], tuple[str, int]] = {}
        # Replaced, never mutated, so any thread may read them.
        self._cuts: dict[tuple[str, str], str] = {}
        self._delays: dict[tuple[str, str], tuple[float, float]] = {}
        self._history: list[dict[str, Any]] = []
        self._loop: _Loop | None = None  # started by the first route
        self._closed = False

    # -- routes ------------------------------------------------------------------
    def add_node(self, node: Any) -> None:
        """Make ``node`` known to the fault methods before it has a route."""
        with self._lock:
            self._nodes.add(_name(node))

    def add_route(self, observer: Any, peer: Any, port_name: str,
                  target: tuple[str, int]) -> tuple[str, int]:
        """Listening proxy for observer's traffic to peer's ``port_name`` at ``target``;
        returns its ``(host, port)``.

        Idempotent: the same (observer, peer, port_name) keeps its address for the
        life of the network (stable across node restarts); a changed ``target``
        applies to the connections made from then on.
        """
        key = (_name(observer), _name(peer), port_name)
        target = (target[0], int(target[1]))
        with self._lock:
            address = self._run(lambda loop: loop.add_route(key, target, self.host), start=True)
            self._nodes.update(key[:2])
            self._addresses[key] = address
            return address

    # -- faults --------------------------------------------------------------------
    # -- lifetime --------------------------------------------------------------
    def close(self) -> None:
        """Stop the loop thread and close every socket; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop = self._loop
        if loop is not None:
            loop.stop()

    def __enter__(self) -> "ProxyNetwork":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._addresses)} routes"
        return f"<ProxyNetwork {self.host}, {state}, {len(self.faults())} faults>"

    # -- helpers (the caller holds self._lock) ------------------------------------
    def _apply(self, cuts: dict, delays: dict, heal: bool = False) -> None:
        self._run(lambda loop: loop.apply(cuts, delays, heal))
        self._cuts, self._delays = cuts, delays

    def _run(self, fn: Callable[[_Loop], Any], start: bool = False) -> Any:
        if self._closed:
            raise _closed_error()
        if self._loop is None:
            if not start:  # no route yet: the state is all there is to change
                return None
            self._loop = _Loop(self.spin, self._cuts, self._delays, self._crashed)
        return self._loop.call(fn)

    def _crashed(self, text: str) -> None:
        if self.events is not None:
            try:
                self.events.emit("warning", message="the network proxy stopped on an error",
                                 traceback=text)
            except Exception:  # a reporter must not hide the crash from the caller
                pass


# -- the loop thread -------------------------------------------------------------------
class _Route:
    __slots__ = ("observer", "peer", "target", "listener", "address", "held")

    def __init__(self, observer: str, peer: str, target: tuple[str, int],
                 listener: socket.socket) -> None:
        self.observer, self.peer, self.target = observer, peer, target
        self.listener = listener
        self.address = tuple(listener.getsockname()[:2])
        self.held: list[socket.socket] = []  # accepted while cut in "drop" mode


class _Held:
    """A connection accepted while cut in "drop" mode, watched only for its end."""

    __slots__ = ("route", "sock")

    def __init__(self, route: _Route, sock: socket.socket) -> None:
        self.route, self.sock = route, sock


class _Conn:
    """One proxied connection. Side 0 is the client (observer), side 1 the server.

    Direction ``d`` reads side ``d`` and writes side ``1 - d``: d=0 is the link
    observer→peer, d=1 the link peer→observer.
    """

    __slots__ = ("links", "socks", "fds", "connecting", "out", "queue", "queued",
                 "last_release", "eof", "shut", "frozen", "was_cut", "masks", "direct")

    def __init__(self, route: _Route, client: socket.socket, server: socket.socket) -> None:
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
        # chunk read can be sent on at once (kept up to date by _Loop.update)
        self.direct = [False, False]


class _Loop:
    """The forwarding thread: every socket of one network, and the faults as applied.

    Everything but ``call`` and ``stop`` runs in the loop thread.
    """

    def __init__(self, spin: float, cuts: dict, delays: dict,
                 on_crash: Callable[[str], None]) -> None:
        self.spin, self.cuts, self.delays, self.on_crash = spin, cuts, delays, on_crash
        self.routes: dict[tuple[str, str, str], _Route] = {}
        self.conns: set[_Conn] = set()
        self.timed: set[_Conn] = set()  # connections with delayed chunks
        self.random = random.Random()
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.commands: list = []
        self.commands_lock = threading.Lock()
        self.stopping = self.stopped = False
        self.crash = ""
        self.poller = _Poller()
        self.wake_r, self.wake_w = socket.socketpair()
        for sock in (self.wake_r, self.wake_w):
            sock.setblocking(False)
        # fd -> what it is: (conn, side), a _Route (listener), a _Held, or "wake"
        self.handlers: dict[int, Any] = {self.wake_r.fileno(): "wake"}
        self.poller.register(self.wake_r.fileno(), READ)
        self.thread = threading.Thread(target=self.run, name="disttest-proxy", daemon=True)
        self.thread.start()

    # -- from other threads --------------------------------------------------------
    def call(self, fn: Callable[[_Loop], Any]) -> Any:
        """Run ``fn(self)`` in the loop thread; return its result or raise its error."""
        done, outcome = threading.Event(), [None, None]
        with self.commands_lock:
            if self.stopped:
                raise _closed_error(self.crash)
            self.commands.append((fn, done, outcome))
        self.wake()
        while not done.wait(0.5):
            if not self.thread.is_alive():
                raise _closed_error(self.crash)
        if outcome[1] is not None:
            raise outcome[1]
        return outcome[0]

    def stop(self) -> None:
        self.stopping = True
        self.wake()
        self.thread.join()

    def wake(self) -> None:
        try:
            self.wake_w.send(b"\0")
        except OSError:  # full (the loop is awake anyway) or closed (it has stopped)
            pass

    # -- the loop --------------------------------------------------------------------
    def run(self) -> None:
        poll, handlers, spin, clock = self.poller.poll, self.handlers, self.spin, time.monotonic
        spin_until = 0.0
        try:
            while not self.stopping:
                if spin_until:  # poll without sleeping: the answer is usually on its way
                    ready = poll(0)
                    if not ready and clock() >= spin_until:
                        spin_until = 0.0
                else:
                    ready = poll(self.next_release())
                for fd, events in ready:
                    handler = handlers.get(fd)
                    if handler.__class__ is tuple:
                        conn, side = handler
                        if events == READ and conn.direct[side]:
                            self.pass_on(conn, side)
                        else:
                            self.on_ready(conn, side, events)
                    elif handler.__class__ is _Route:
                        self.on_accept(handler)
                    elif handler.__class__ is _Held:
                        self.let_go(handler.route, handler.sock)
                    elif handler == "wake":
                        self.on_wake()
                if ready and spin:
                    spin_until = clock() + spin
                if self.timed:
                    self.release_due()
        except BaseException:
            self.crash = traceback.format_exc()
            self.on_crash(self.crash)
        finally:
            self.shutdown()

    def next_release(self) -> float | None:
        """Seconds until the next delayed chunk is due (None: no chunk waits)."""
        if not self.timed:
            return None
        soonest = min((q[0][0] for c in self.timed for d, q in enumerate(c.queue)
                       if q and not c.frozen[d]), default=None)
        return None if soonest is None else max(0.0, soonest - time.monotonic())

    def on_wake(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except OSError:
            pass
        with self.commands_lock:
            commands, self.commands = self.commands, []
        for fn, done, outcome in commands:
            try:
                outcome[0] = fn(self)
            except BaseException as exc:  # raised again in the caller's thread
                outcome[1] = exc
            done.set()

    def shutdown(self) -> None:
        with self.commands_lock:
            self.stopped = True
            commands, self.commands = self.commands, []
        for conn in list(self.conns):
            self.close(conn, rst=True)
        for route in self.routes.values():
            self.let_go(route)
            route.listener.close()
        self.poller.close()
        self.wake_r.close()
        self.wake_w.close()
        for _fn, done, outcome in commands:
            outcome[1] = _closed_error(self.crash)
            done.set()

    # -- commands ------------------------------------------------------------------
    def add_route(self, key: tuple[str, str, str], target: tuple[str, int],
                  host: str) -> tuple[str, int]:
        route = self.routes.get(key)
        if route is None:
            listener = socket.socket(_family(host), socket.SOCK_STREAM)
            try:
                listener.bind((host, 0))
                listener.listen(128)
                listener.setblocking(False)
                route = _Route(key[0], key[1], target, listener)
                self.poller.register(listener.fileno(), READ)
            except BaseException:
                listener.close()
                raise
            self.handlers[listener.fileno()] = route
            self.routes[key] = route
        route.target = target
        return route.address

    def apply(self, cuts: dict, delays: dict, heal: bool) -> None:
        """Install the faults; bring every held or established connection in line."""
        self.cuts, self.delays = cuts, delays
        for conn in list(self.conns):
            modes = (cuts.get(conn.links[0]), cuts.get(conn.links[1]))
            if "reject" in modes:
                self.close(conn, rst=True)
                continue
            if modes[0] or modes[1]:
                conn.was_cut = True
                conn.frozen = [conn.frozen[0] or bool(modes[0]),
                               conn.frozen[1] or bool(modes[1])]
            elif conn.was_cut:  # healed: a real network would have timed it out
                self.close(conn, rst=True)
                continue
            if heal and conn in self.timed:  # what is still delayed arrives now
                for d in (0, 1):
                    for _at, chunk in conn.queue[d]:
                        conn.out[d].extend(chunk)
                    conn.queue[d].clear()
                    conn.queued[d] = 0
                self.timed.discard(conn)
                if not (self.flush(conn, 0) and self.flush(conn, 1)):
                    continue
            self.update(conn)
        for route in self.routes.values():
            if route.held and self.cut_mode(route.observer, route.peer) != "drop":
                self.let_go(route)

    def let_go(self, route: _Route, sock: socket.socket | None = None) -> None:
        """Reset ``sock``, or every connection ``route`` holds, and forget it."""
        for held in [sock] if sock is not None else route.held:
            if _HANG_UP:
                self.poller.unregister(held.fileno())
                del self.handlers[held.fileno()]
            _reset(held)
        if sock is None:
            route.held.clear()
        else:
            route.held.remove(sock)

    # -- events ----------------------------------------------------------------------
    def cut_mode(self, a: str, b: str) -> str | None:
        """How a new connection between a and b fails: a handshake needs both ways."""
        modes = {self.cuts.get((a, b)), self.cuts.get((b, a))} - {None}
        return "reject" if "reject" in modes else modes.pop() if modes else None

    def on_accept(self, route: _Route) -> None:
        while True:
            try:
                client, _addr = route.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return  # out of descriptors: leave the rest in the backlog for now
                continue  # the client gave up before we accepted it
            cut = self.cut_mode(route.observer, route.peer) if self.cuts else None
            if cut == "reject":
                _reset(client)
                continue
            if cut == "drop":  # hold it: never connect upstream, never answer
                route.held.append(client)
                if _HANG_UP:  # but let go of it once the client gives up, or they pile up
                    self.poller.register(client.fileno(), _HANG_UP)
                    self.handlers[client.fileno()] = _Held(route, client)
                continue
            server = socket.socket(_family(route.target[0]), socket.SOCK_STREAM)
            for sock in (client, server):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(route, client, server)
            self.conns.add(conn)
            err = server.connect_ex(route.target)
            if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                self.close(conn, rst=True)  # the client sees a reset
                continue
            self.update(conn)

    def pass_on(self, conn: _Conn, side: int) -> None:
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

    def on_ready(self, conn: _Conn, side: int, events: int) -> None:
        if events & _TROUBLE:
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

    def forward(self, conn: _Conn, d: int, data: memoryview) -> bool:
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

    def flush(self, conn: _Conn, d: int) -> bool:
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

    def update(self, conn: _Conn) -> None:
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

    def close(self, conn: _Conn, rst: bool = False) -> None:
        self.conns.discard(conn)
        self.timed.discard(conn)
        conn.direct = [False, False]
        for side in (0, 1):
            if conn.masks[side]:
                self.poller.unregister(conn.fds[side])
                del self.handlers[conn.fds[side]]
                conn.masks[side] = 0
            if rst:
                _reset(conn.socks[side])
            else:
                conn.socks[side].close()


class _Poller:
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


# -- small helpers -----------------------------------------------------------------------
def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    except OSError:
        pass
    sock.close()


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET




def _closed_error(crash: str = "") -> NetworkModeError:
    if crash:
        return NetworkModeError(
            "the network proxy stopped on an error", crash.strip().splitlines()[-1],
            ["report it as a disttest bug, with the traceback in remote_traceback",
             "acquire a new cluster"], remote_traceback=crash)
    return NetworkModeError("the network proxy is closed",
                            "close() was called, or its cluster was stopped",
                            ["acquire a new cluster"])
