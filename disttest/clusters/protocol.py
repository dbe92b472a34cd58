"""The wire protocol between the controller and node agents (stdlib only).

Both sides import this module, so it must stay free of anything but the
standard library: the agent's start-up time is a product feature.

Why not ``multiprocessing.connection``? Importing it alone costs about twice a
bare interpreter start, and node start-up is on every test run's critical
path. So the same ideas are spoken on plain sockets:

* a frame is a 4-byte big-endian length followed by that many bytes;
* a connection is authenticated both ways with an HMAC-SHA256 challenge and
  response over the cluster's random key before anything is unpickled;
* the session is bound to that handshake: both nonces and both roles go into
  the answers, and a session key derived from them (never sent) signs every
  later frame, with its direction and its sequence number (:class:`Channel`).
  A peer that relays someone else's handshake -- a listener on a port the
  controller dials, say -- therefore gains nothing: it can pass frames on
  unchanged, never inject, alter, replay, reorder or reflect one;
* after that every frame is a pickle and its MAC: requests ``(op, *args)``,
  replies ``(status, value)``.

Every request the controller may send is declared once, in :data:`OPS`: its
name, its arguments and the shape of its reply. The controller builds
requests only through :func:`request` (called by ``Node``'s methods); the
agent serves exactly the ops declared here and answers anything else with a
protocol error.
"""
from __future__ import annotations

import os
import socket
import struct

try:  # The built-in SHA-256, not OpenSSL's: importing hmac/hashlib loads
    # OpenSSL, which costs about 4 ms of every node's start-up.
    try:
        from _sha2 import sha256 as _sha256  # Python 3.12+
    except ImportError:
        from _sha256 import sha256 as _sha256  # Python 3.9-3.11
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - an interpreter without them
    import hashlib
    from hmac import compare_digest

    _sha256 = hashlib.sha256

MAX_FRAME = 1 << 31
_HEADER = struct.Struct("!I")
_CHALLENGE = b"#DTCHALLENGE#"
_WELCOME = b"#DTWELCOME#"
_FAILURE = b"#DTFAILURE#"
_NONCE_SIZE = 32

READY_PREFIX = "DISTTEST-READY"
# Written on a node's stdin just before the controller closes it to stop the
# node: end of file without it means the controller died (the node then ends
# what its code started itself; a live controller reports those as leaks).
STOP_WORD = b"DISTTEST-STOP\n"

# Reply statuses: a reply is ``(OK, value)`` or ``(ERR, error description)``,
# the description being ``(type name, message, traceback text, pickled
# exception or None)``, plus, in a reply to a request, where the node's log
# ended when the request arrived (an offset, or None) after them.
OK = "ok"
ERR = "err"

# Type names of error descriptions that do not come from user code.
PROTOCOL_ERROR = "disttest.ProtocolError"          # a request the node does not serve
SERIALIZATION_ERROR = "disttest.SerializationError"  # a result that cannot be pickled

# The states of spawned work, first in a ``spawn_status`` reply.
SPAWN_RUNNING = "running"
SPAWN_DONE = "done"      # value: the function's result
SPAWN_ERROR = "error"    # value: the error description
SPAWN_GONE = "gone"      # stopped by a reset (or never known)


# Every request, declared once: name -> (its arguments in order, its reply).
# The agent serves each with its method ``op_<name>``; ``Node`` sends each
# from a method of its own. (Plain tuples: the agent imports this module, and
# its start-up is on every run's critical path.)
OPS = {
    "ping": ((), "the node's pid"),
    "call": (("fn", "args", "kwargs"), "what fn(*args, **kwargs) returned"),
    "spawn": (("fn", "args", "kwargs"), "an int id for spawn_status"),
    "spawn_status": (("spawn_id", "wait", "reads_error"), "(state, value): SPAWN_RUNNING, "
                     "SPAWN_DONE (value: the result), SPAWN_ERROR (value: an error description; "
                     "with reads_error the error counts as read), SPAWN_GONE"),
    "spawn_failures": ((), "[(spawn_id, fn name, error description)] of failed spawned work "
                       "whose error nobody has read; each is returned once"),
    "configure": (("settings",), "None"),
    "reset": (("timeout",), "(problems, busy ports): sentences saying what keeps the node "
              "from being clean (a failed on_reset callback, spawned work still running, "
              "a busy port), and the ports still in use"),
    "coverage_save": ((), "True when the node is measured by coverage.py and wrote its "
                      "data file (the controller is about to kill or pause it), else False"),
    "stacks": ((), "[(thread name, stack text)] of the node's threads that run code outside "
               "disttest (what a call that does not answer is waiting on)"),
    "info": ((), "a dict: pid, name, ports, uptime_s, threads, spawned_running, rss_bytes"),
    "detach": (("ttl", "lock_paths", "record_path", "log_path", "call_timeout"), "None"),
    "attach": ((), "the node's pid"),
    "shutdown": ((), "None"),
    "imports": (("project_dirs",), "sorted names of the modules the node imported since it "
                "was ready that a node template may preload (agent_imports.preloadable)"),
}


class ProtocolError(Exception):
    """A request that is not one of :data:`OPS`, or has the wrong arguments."""


def check(message) -> tuple:
    """``(op, args)`` of a request, or :class:`ProtocolError` naming what is wrong."""
    if type(message) is not tuple or not message:
        raise ProtocolError(f"a request is a tuple (op, *args), not {type(message).__name__}")
    op = message[0]
    declared = OPS.get(op) if type(op) is str else None
    if declared is None:
        raise ProtocolError(f"unknown op {op!r}; a node serves {', '.join(sorted(OPS))}")
    if len(message) - 1 != len(declared[0]):
        raise ProtocolError(f"op {op!r} takes {len(declared[0])} argument(s) "
                            f"({', '.join(declared[0]) or 'none'}), not {len(message) - 1}")
    return op, message[1:]


def request(name: str, *args) -> tuple:
    """The request ``(name, *args)``, checked against its declaration."""
    message = (name,) + args
    check(message)
    return message


class AuthenticationError(ConnectionError):
    """The peer could not prove that it holds the cluster key."""


def send_frame(sock: socket.socket, payload: bytes) -> None:
    # One write for header and payload keeps small messages in one segment.
    if len(payload) < 65536:
        sock.sendall(_HEADER.pack(len(payload)) + payload)
    else:
        sock.sendall(_HEADER.pack(len(payload)))
        sock.sendall(payload)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    if size == 0:
        return b""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise EOFError("connection closed by peer")
        got += n
    return bytes(buf)


def recv_frame(sock: socket.socket, limit: int = MAX_FRAME) -> bytes:
    (size,) = _HEADER.unpack(recv_exact(sock, 4))
    if size > limit:
        raise ConnectionError(f"frame of {size} bytes exceeds the limit of {limit}")
    return recv_exact(sock, size)


_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _digest(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104), equal to ``hmac.new(key, message, "sha256").digest()``."""
    if len(key) > _BLOCK:
        key = _sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = _sha256(key.translate(_IPAD) + message).digest()
    return _sha256(key.translate(_OPAD) + inner).digest()


# Before authentication frames are tiny: never let an unauthenticated peer
# make us allocate much.
_AUTH_LIMIT = 256


_TAG_SIZE = 16  # HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5)
_READ_SIZE = 65536  # what one recv() of a channel asks for


class Channel:
    """An authenticated connection after the handshake: every frame ends with
    the MAC of (direction, sequence number, payload) under the session key.

    Not thread-safe: one request at a time per connection, as both sides use it.
    """

    __slots__ = ("sock", "_inner", "_outer", "_send_label", "_recv_label", "_sent", "_received",
                 "_pending", "_timeout")

    def __init__(self, sock: socket.socket, session_key: bytes, client: bool) -> None:
        self.sock = sock
        key = session_key.ljust(_BLOCK, b"\0")
        # HMAC's keyed inner and outer states, computed once: each frame then
        # costs two copies and two short hashes.
        self._inner = _sha256(key.translate(_IPAD))
        self._outer = _sha256(key.translate(_OPAD))
        self._send_label, self._recv_label = (b"c", b"s") if client else (b"s", b"c")
        self._sent = self._received = 0
        self._pending = b""  # bytes received past the last frame: the next one's start
        self._timeout = sock.gettimeout()

    def _tag(self, label: bytes, number: int, payload) -> bytes:
        inner = self._inner.copy()
        inner.update(label + number.to_bytes(8, "big"))
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_TAG_SIZE]

    def send(self, payload: bytes) -> None:
        tag = self._tag(self._send_label, self._sent, payload)
        self._sent += 1
        size = len(payload) + _TAG_SIZE
        if size < 65536:  # one write keeps small messages in one segment
            self.sock.sendall(_HEADER.pack(size) + payload + tag)
        else:
            self.sock.sendall(_HEADER.pack(size))
            self.sock.sendall(payload)
            self.sock.sendall(tag)

    def recv(self, limit: int = MAX_FRAME) -> bytes:
        # One recv() for a small frame, header and all (with a timeout, each recv()
        # is a poll() and a read): what comes after the frame is kept for the next.
        data = self._pending or self._read()
        while len(data) < _HEADER.size:
            data += self._read()
        (size,) = _HEADER.unpack_from(data)
        if size > limit + _TAG_SIZE:
            raise ConnectionError(f"frame of {size} bytes exceeds the limit of "
                                  f"{limit + _TAG_SIZE}")
        end = _HEADER.size + size
        if len(data) >= end:
            frame, self._pending = data[_HEADER.size:end], data[end:]
        else:  # a large frame: the rest in one buffer of its size
            self._pending = b""
            frame = data[_HEADER.size:] + recv_exact(self.sock, end - len(data))
        if size < _TAG_SIZE:
            raise AuthenticationError("a frame too short to carry its MAC")
        payload = frame[:-_TAG_SIZE]
        if not compare_digest(frame[-_TAG_SIZE:],
                              self._tag(self._recv_label, self._received, payload)):
            raise AuthenticationError("a frame failed its MAC (altered, replayed or "
                                      "not from the authenticated peer)")
        self._received += 1
        return payload

    def _read(self) -> bytes:
        data = self.sock.recv(_READ_SIZE)
        if not data:
            raise EOFError("connection closed by peer")
        return data

    def settimeout(self, timeout: float | None) -> None:
        if timeout != self._timeout:  # setting it costs a system call, even unchanged
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def close(self) -> None:
        self.sock.close()


def _bound(key: bytes, role: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return _digest(key, role + server_nonce + client_nonce)


def serve_handshake(sock: socket.socket, key: bytes) -> Channel:
    """Server side: the client proves the key first, then the server does; the
    session key of the returned channel is bound to both nonces."""
    nonce = os.urandom(_NONCE_SIZE)
    send_frame(sock, _CHALLENGE + nonce)
    reply = recv_frame(sock, _AUTH_LIMIT)
    answer, client_nonce = reply[:32], reply[32:]
    if len(client_nonce) != _NONCE_SIZE or not compare_digest(
            answer, _bound(key, b"client", nonce, client_nonce)):
        send_frame(sock, _FAILURE)
        raise AuthenticationError("client failed the key challenge")
    send_frame(sock, _WELCOME + _bound(key, b"server", nonce, client_nonce))
    return Channel(sock, _bound(key, b"session", nonce, client_nonce), client=False)


def client_handshake(sock: socket.socket, key: bytes) -> Channel:
    """Client side of :func:`serve_handshake`."""
    challenge = recv_frame(sock, _AUTH_LIMIT)
    if not challenge.startswith(_CHALLENGE):
        raise AuthenticationError("peer did not send a disttest challenge")
    server_nonce = challenge[len(_CHALLENGE):]
    if len(server_nonce) != _NONCE_SIZE:
        raise AuthenticationError("peer sent a malformed challenge")
    nonce = os.urandom(_NONCE_SIZE)
    send_frame(sock, _bound(key, b"client", server_nonce, nonce) + nonce)
    welcome = recv_frame(sock, _AUTH_LIMIT)
    if not welcome.startswith(_WELCOME):
        raise AuthenticationError("node refused the cluster key")
    if not compare_digest(welcome[len(_WELCOME):], _bound(key, b"server", server_nonce, nonce)):
        raise AuthenticationError("node failed the key challenge")
    return Channel(sock, _bound(key, b"session", server_nonce, nonce), client=True)
