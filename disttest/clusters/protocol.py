"""The wire protocol between the controller and node agents (stdlib only).

Both sides import this module, so it must stay free of anything but the
standard library: the agent's start-up time is a product feature.

Why not ``multiprocessing.connection``? Importing it alone costs about twice a
bare interpreter start, and node start-up is on every test run's critical
path. So the same ideas are spoken on plain sockets:

* a frame is a 4-byte big-endian length followed by that many bytes;
* a connection is authenticated both ways with an HMAC-SHA256 challenge and
  response over the cluster's random key before anything is unpickled;
* after that every frame is a pickle: requests ``(op, *args)``, replies
  ``(status, value)``.
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

# Reply statuses.
OK = "ok"
ERR = "err"


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


def serve_handshake(sock: socket.socket, key: bytes) -> None:
    """Server side: the client proves the key first, then the server does."""
    nonce = os.urandom(_NONCE_SIZE)
    send_frame(sock, _CHALLENGE + nonce)
    reply = recv_frame(sock, _AUTH_LIMIT)
    answer, client_nonce = reply[:32], reply[32:]
    if len(client_nonce) != _NONCE_SIZE or not compare_digest(
            answer, _digest(key, nonce)):
        send_frame(sock, _FAILURE)
        raise AuthenticationError("client failed the key challenge")
    send_frame(sock, _WELCOME + _digest(key, client_nonce))


def client_handshake(sock: socket.socket, key: bytes) -> None:
    """Client side of :func:`serve_handshake`."""
    challenge = recv_frame(sock, _AUTH_LIMIT)
    if not challenge.startswith(_CHALLENGE):
        raise AuthenticationError("peer did not send a disttest challenge")
    nonce = os.urandom(_NONCE_SIZE)
    send_frame(sock, _digest(key, challenge[len(_CHALLENGE):]) + nonce)
    welcome = recv_frame(sock, _AUTH_LIMIT)
    if not welcome.startswith(_WELCOME):
        raise AuthenticationError("node refused the cluster key")
    if not compare_digest(welcome[len(_WELCOME):], _digest(key, nonce)):
        raise AuthenticationError("node failed the key challenge")
