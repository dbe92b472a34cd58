"""How a request reaches a node and its reply comes back (``Node``'s RPC half).

Each call borrows an authenticated connection from the node's small pool (a
new one is opened when all are busy), so several calls can run on a node at
once and a sequential caller pays one round trip per call. A reply that
does not come in time, or a connection that breaks, becomes a
``CallTimeoutError`` (with the node's stacks) or a ``NodeCrashedError`` /
lost-connection error saying what happened to the node.
"""
from __future__ import annotations

import signal
import socket
import time
from typing import Any, Callable

from disttest.clusters import protocol, serialize
from disttest.clusters.launcher import tail as _tail
from disttest.clusters.remote import remote_error
from disttest.errors import CallTimeoutError, DisttestError, NodeCrashedError

# Failures of calls are shown from the test's line, not through this module.
__unittest = True


def call_each(nodes: list, fn: Callable, args: tuple, kwargs: dict) -> list[Any]:
    """``fn(*args, **kwargs)`` on every node at once; results in node order.

    Every request is sent before any reply is read, so the nodes work at the
    same time without a thread per node. If any node raises, the first error
    (in node order) is raised after every reply has been read, so no call is
    left running behind the caller.
    """
    __tracebackhide__ = True
    payload = serialize.dumps_request("call", fn, args, kwargs)
    what = getattr(fn, "__qualname__", "call")
    sent: list[Any] = []
    for node in nodes:
        try:
            sent.append(node._send(payload, what))
        except BaseException as exc:
            sent.append(exc)
    results, first_error = [], None
    for node, item in zip(nodes, sent):
        try:
            if isinstance(item, BaseException):
                raise item
            results.append(node._receive(item, what))
        except BaseException as exc:
            first_error = first_error or exc
            results.append(None)
    if first_error is not None:
        raise first_error
    return results


def _format_stacks(stacks: list) -> str:
    return "\n".join(f"--- thread {name!r} (most recent call last):\n{text.rstrip()}"
                     for name, text in stacks)


class NodeRPC:
    """The request/reply half of :class:`~disttest.clusters.node.Node` (a base
    class of it: these methods use the node's process, key, log and events)."""

    def _request(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        """Send the request ``op`` (declared in protocol.OPS) and return its reply."""
        return self._request_bytes(serialize.dumps(protocol.request(op, *args)), op, timeout)

    def _request_bytes(self, payload: bytes, what: str, timeout: float | None = None) -> Any:
        __tracebackhide__ = True
        return self._receive(self._send(payload, what, timeout), what)

    def _send(self, payload: bytes, what: str, timeout: float | None = None) -> tuple:
        """Send a request on a borrowed connection; ``_receive`` reads the reply."""
        __tracebackhide__ = True
        timeout = self.call_timeout if timeout is None else timeout
        began = time.monotonic()
        conn = self._connection(what, timeout)
        try:
            if timeout is not None:
                # Opening a connection may have used part of the time. (A borrowed one
                # keeps the timeout it had: setting a socket's timeout is a system call.)
                spent = time.monotonic() - began
                conn.settimeout(timeout if spent < 0.001 else max(0.001, timeout - spent))
            else:
                conn.settimeout(None)
            conn.send(payload)
        except BaseException as exc:
            raise self._failed(conn, what, timeout, exc) from None
        started = time.perf_counter()
        self.in_flight[conn] = (what, started)
        return conn, timeout, started

    def _receive(self, sent: tuple, what: str) -> Any:
        __tracebackhide__ = True
        conn, timeout, started = sent
        try:
            status, value = serialize.loads(conn.recv())
        except BaseException as exc:
            raise self._failed(conn, what, timeout, exc) from None
        del self.in_flight[conn]
        with self._lock:
            self._free.append(conn)
        if self.debug and self.events:
            self.events.emit("rpc", node=self.name, call=what, ok=status == protocol.OK,
                             ms=round((time.perf_counter() - started) * 1000, 3))
        if status == protocol.OK:
            return value
        raise remote_error(self.name, value, self._output_since(value[4] if len(value) > 4
                                                                 else None))

    def _output_since(self, offset: int | None, lines: int = 40) -> str:
        """The node's log from ``offset`` on (its last ``lines``): what it printed
        during a call. Only where the log is this machine's file the node writes."""
        if offset is None or self.local_pid is None:
            return ""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                data = log.read(1 << 20)
        except OSError:
            return ""
        text = data.decode(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _failed(self, conn: protocol.Channel, what: str, timeout: float | None,
                exc: BaseException) -> BaseException:
        """What to raise for a request that failed: the connection is closed (a
        late reply must never be read as the next call's), and socket errors
        become a timeout or a lost node. (Not a context manager: this is the
        round trip of every call.)"""
        self.in_flight.pop(conn, None)
        conn.close()
        if isinstance(exc, socket.timeout):
            return self._timed_out(what, timeout)
        if isinstance(exc, (EOFError, OSError)):
            return self._lost(what, exc)
        return exc

    def _timed_out(self, what: str, timeout: float) -> CallTimeoutError:
        log = _tail(self.log_path, 20)
        stacks: list = []
        if self.paused:
            cause, steps = "the node is paused", ["call node.resume() first"]
        else:
            stacks = self.stacks() if what != "stacks" else []
            cause = (f"{what} is still running on the node or blocked; its threads now:\n"
                     + _format_stacks(stacks) if stacks else
                     "the function may block, or the node may be overloaded")
            steps = [f"read the stack of the thread running {what} above: its last line "
                     "is where it waits",
                     "a call meant to take longer: node.submit(fn).result(timeout=...), "
                     "or a higher call_timeout"]
        if log:
            cause += f"\nthe node's log ends with:\n{log}"
        return CallTimeoutError(f"node {self.name} did not answer {what} within {timeout:g}s",
                                cause, steps, node=self.name, stacks=stacks, log_tail=log)

    def stacks(self, timeout: float = 2.0) -> list[tuple[str, str]]:
        """``[(thread name, stack)]`` of the node's threads running code outside
        disttest, now; ``[]`` when the node does not answer within ``timeout``."""
        try:
            return [tuple(item) for item in self._request("stacks", timeout=timeout)]
        except Exception:  # a node that cannot answer has no stacks to show
            return []

    def _connection(self, what: str, timeout: float | None = None) -> protocol.Channel:
        with self._lock:
            if self._free:
                return self._free.pop()
            process = self.process
        if process is None or not process.alive():
            raise self._lost(what, None)
        # A paused or busy node still completes the TCP handshake (the kernel
        # does), but not ours: bound it by the call's own timeout.
        limit = 10.0 if timeout is None else timeout
        sock = None
        try:
            sock = self._dial((self.host, process.control_port), limit)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return protocol.client_handshake(sock, self._key)
        except socket.timeout:
            if sock is not None:
                sock.close()
            raise self._timed_out(what, limit) from None
        except (OSError, EOFError) as exc:
            if sock is not None:
                sock.close()
            raise self._lost(what, exc) from None

    def _lost(self, what: str, exc: BaseException | None) -> DisttestError:
        process = self.process
        if process is not None:
            process.wait(0.5)
        if process is None or not process.alive():
            code = process.returncode if process else None
            status = (f"killed by signal {signal.Signals(-code).name}" if code and code < 0
                      else f"exit status {code}")
            log = _tail(self.log_path, 20)
            if not self.stopped_on_purpose and self._reported_pid != self.pid:
                self._reported_pid = self.pid  # one report per dead process
                if self.events:
                    self.events.emit("node_crashed", cluster=self.boot.get("cluster_id"),
                                     node=self.name, pid=self.pid, status=status)
            earlier = self.stopped_on_purpose and self.stopped_by not in (None,
                                                                           self.current_test)
            if earlier:
                return NodeCrashedError(
                    f"node {self.name} is not running ({status}) during {what}: it was "
                    f"killed by an earlier test ({self.stopped_by})",
                    "a test that kills or terminates a node leaves it down for the tests "
                    "after it in the class",
                    [f"restart what {self.stopped_by.rpartition('.')[2]} stopped before it "
                     "ends (in its tearDown: if not node.alive: node.restart())",
                     "or give that test a class of its own"],
                    node=self.name, log_tail=log, stopped_by=self.stopped_by)
            return NodeCrashedError(
                f"node {self.name} is not running ({status}) during {what}",
                "the node process died" + (f"; its log ends with:\n{log}" if log else ""),
                ["if the test killed it on purpose, call node.restart() before using it",
                 "otherwise read the node's log: node.logs()"],
                node=self.name, log_tail=log)
        return DisttestError(f"lost the connection to node {self.name} during {what}: {exc}",
                             kind="connection-lost")

    def drop_connections(self) -> None:
        """Close the idle connections to the node (the next call opens a new one)."""
        with self._lock:
            conns, self._free = self._free, []
        for conn in conns:
            conn.close()
