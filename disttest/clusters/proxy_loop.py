"""The proxy's thread: commands from other threads, listeners, accepts, faults.

``ProxyLoop`` owns one network's sockets; other threads reach it only through
``call`` (a command list and a ``Waker``), so a fault change is in
force when the call returns. The bytes themselves move in ``Forwarder``
(clusters/proxy_streams.py).
"""
from __future__ import annotations

import errno
import socket
import threading
import time
import traceback
from typing import Any, Callable

from disttest.clusters.proxy_streams import (
    HANG_UP, READ, Conn, Forwarder, Held, Route, closed_error, family, reset)
from disttest.clusters.waker import Waker

__all__ = ["ProxyLoop"]


class ProxyLoop(Forwarder):
    """The forwarding thread: every socket of one network, and the faults as applied.

    Everything but ``call`` and ``stop`` runs in the loop thread.
    """

    def __init__(self, spin: float, cuts: dict, delays: dict,
                 on_crash: Callable[[str], None]) -> None:
        super().__init__(cuts, delays)
        self.spin, self.on_crash = spin, on_crash
        self.routes: dict[tuple[str, str, str], Route] = {}
        self.commands: list = []
        self.commands_lock = threading.Lock()
        self.stopping = self.stopped = False
        self.crash = ""
        self.waker = Waker()
        self.handlers[self.waker.fileno()] = "wake"
        self.poller.register(self.waker.fileno(), READ)
        self.thread = threading.Thread(target=self.run, name="disttest-proxy", daemon=True)
        self.thread.start()

    # -- from other threads --------------------------------------------------------
    def call(self, fn: Callable[[ProxyLoop], Any]) -> Any:
        """Run ``fn(self)`` in the loop thread; return its result or raise its error."""
        done, outcome = threading.Event(), [None, None]
        with self.commands_lock:
            if self.stopped:
                raise closed_error(self.crash)
            self.commands.append((fn, done, outcome))
        self.waker.wake()
        while not done.wait(0.5):
            if not self.thread.is_alive():
                raise closed_error(self.crash)
        if outcome[1] is not None:
            raise outcome[1]
        return outcome[0]

    def stop(self) -> None:
        self.stopping = True
        self.waker.wake()
        self.thread.join()

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
                    elif handler.__class__ is Route:
                        self.on_accept(handler)
                    elif handler.__class__ is Held:
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
        self.waker.drain()
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
        self.waker.close()
        for _fn, done, outcome in commands:
            outcome[1] = closed_error(self.crash)
            done.set()

    # -- commands ------------------------------------------------------------------
    def add_route(self, key: tuple[str, str, str], target: tuple[str, int],
                  host: str) -> tuple[str, int]:
        route = self.routes.get(key)
        if route is None:
            listener = socket.socket(family(host), socket.SOCK_STREAM)
            try:
                listener.bind((host, 0))
                listener.listen(128)
                listener.setblocking(False)
                route = Route(key[0], key[1], target, listener)
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

    def let_go(self, route: Route, sock: socket.socket | None = None) -> None:
        """Reset ``sock``, or every connection ``route`` holds, and forget it."""
        for held in [sock] if sock is not None else route.held:
            if HANG_UP:
                self.poller.unregister(held.fileno())
                del self.handlers[held.fileno()]
            reset(held)
        if sock is None:
            route.held.clear()
        else:
            route.held.remove(sock)

    # -- events ----------------------------------------------------------------------
    def cut_mode(self, a: str, b: str) -> str | None:
        """How a new connection between a and b fails: a handshake needs both ways."""
        modes = {self.cuts.get((a, b)), self.cuts.get((b, a))} - {None}
        return "reject" if "reject" in modes else modes.pop() if modes else None

    def on_accept(self, route: Route) -> None:
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
                reset(client)
                continue
            if cut == "drop":  # hold it: never connect upstream, never answer
                route.held.append(client)
                if HANG_UP:  # but let go of it once the client gives up, or they pile up
                    self.poller.register(client.fileno(), HANG_UP)
                    self.handlers[client.fileno()] = Held(route, client)
                continue
            server = socket.socket(family(route.target[0]), socket.SOCK_STREAM)
            for sock in (client, server):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(route, client, server)
            self.conns.add(conn)
            err = server.connect_ex(route.target)
            if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                self.close(conn, rst=True)  # the client sees a reset
                continue
            self.update(conn)
