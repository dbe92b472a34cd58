"""Two small systems whose nodes identify each other by address, as Raft
libraries and schedulers do.

* ``Raft``: leader election with terms, votes and heartbeats. Every message
  carries its sender's own address (``this_node.host`` and its port, never a
  peer map entry), and every answer is sent to that address on a new
  connection. A leader "has quorum" while a majority (itself included) acked
  its heartbeats within the last ``QUORUM_S``.
* ``Server`` / ``client_put``: a store on one node that records each client by
  the address its connection comes from, and clients on the other nodes that
  keep one connection open to it.

Standard library only; started on nodes with ``cluster.call_all``.
"""
from __future__ import annotations

import json
import random
import socket
import threading
import time

from disttest import this_node

HEARTBEAT_S = 0.05
ELECTION_S = (0.4, 0.8)
QUORUM_S = 0.4
SEND_TIMEOUT = 0.3


def _me() -> str:
    return f"{this_node.host}:{this_node.port('app')}"


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


class Raft:
    def __init__(self) -> None:
        self.me = _me()
        # Peers as addresses, from the peer map once: afterwards the node only
        # knows an address because someone sent it.
        self.peers = sorted(f"{h}:{p}" for h, p in this_node.peers("app").values())
        self.lock = threading.Lock()
        self.term = 0
        self.voted_for: str | None = None
        self.state = "follower"
        self.leader: str | None = None
        self.votes: set[str] = set()
        self.acks: dict[str, float] = {}
        self.deadline = self._new_deadline()
        self.listener = socket.create_server((this_node.host, this_node.port("app")))
        self.stopped = False
        for target in (self._accept, self._tick):
            threading.Thread(target=target, daemon=True).start()
        this_node.on_reset(self.stop)

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()

    def status(self) -> dict:
        with self.lock:
            quorum = self.state == "leader" and self._has_quorum()
            return {"me": self.me, "state": self.state, "term": self.term,
                    "leader": self.leader if self.state != "leader" else self.me,
                    "quorum": quorum}

    def replicate(self, value: str) -> float:
        """As leader: send ``value`` to every peer, return the seconds until a
        majority acked it (a slow network makes this slower)."""
        started = time.monotonic()
        with self.lock:
            term = self.term
        acked = {self.me}
        done = threading.Event()
        lock = threading.Lock()

        def one(peer: str) -> None:
            try:
                with socket.create_connection(_split(peer), timeout=5) as conn:
                    conn.sendall(json.dumps({"type": "store", "term": term, "from": self.me,
                                             "value": value}).encode() + b"\n")
                    if conn.makefile().readline().strip() == "ok":
                        with lock:
                            acked.add(peer)
                            if len(acked) * 2 > len(self.peers) + 1:
                                done.set()
            except OSError:
                pass

        for peer in self.peers:
            threading.Thread(target=one, args=(peer,), daemon=True).start()
        if not done.wait(10):
            raise TimeoutError("no majority stored the value")
        return time.monotonic() - started

    # -- internals --------------------------------------------------------------
    def _new_deadline(self) -> float:
        return time.monotonic() + random.uniform(*ELECTION_S)

    def _has_quorum(self) -> bool:
        now = time.monotonic()
        fresh = sum(1 for at in self.acks.values() if now - at < QUORUM_S)
        return (fresh + 1) * 2 > len(self.peers) + 1

    def _send(self, address: str, message: dict) -> None:
        def go() -> None:
            try:
                with socket.create_connection(_split(address), timeout=SEND_TIMEOUT) as conn:
                    conn.sendall(json.dumps(message).encode() + b"\n")
            except OSError:
                pass  # lost: the protocol retries on its own
        threading.Thread(target=go, daemon=True).start()

    def _tick(self) -> None:
        while not self.stopped:
            time.sleep(HEARTBEAT_S)
            with self.lock:
                if self.state == "leader":
                    for peer in self.peers:
                        self._send(peer, {"type": "append", "term": self.term, "from": self.me})
                elif time.monotonic() > self.deadline:
                    self.term += 1
                    self.state, self.voted_for, self.leader = "candidate", self.me, None
                    self.votes = {self.me}
                    self.deadline = self._new_deadline()
                    for peer in self.peers:
                        self._send(peer, {"type": "vote?", "term": self.term, "from": self.me})

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                line = conn.makefile().readline()
            except OSError:
                return
            if not line:
                return
            message = json.loads(line)
            reply = self._handle(message)
            if message["type"] == "store":
                try:
                    conn.sendall(b"ok\n" if reply else b"no\n")
                except OSError:
                    pass

    def _handle(self, m: dict) -> bool:
        with self.lock:
            if m["term"] > self.term:
                self.term, self.state, self.voted_for = m["term"], "follower", None
            kind, sender = m["type"], m["from"]
            if kind == "vote?":
                grant = m["term"] == self.term and self.voted_for in (None, sender)
                if grant:
                    self.voted_for = sender
                    self.deadline = self._new_deadline()
                self._send(sender, {"type": "vote", "term": self.term, "from": self.me,
                                    "granted": grant})
            elif kind == "vote":
                if self.state == "candidate" and m["term"] == self.term and m["granted"]:
                    self.votes.add(sender)
                    if len(self.votes) * 2 > len(self.peers) + 1:
                        self.state, self.leader = "leader", self.me
                        self.acks = {}
            elif kind in ("append", "store"):
                if m["term"] < self.term:
                    return False
                self.state, self.leader = "follower", sender
                self.deadline = self._new_deadline()
                if kind == "append":
                    self._send(sender, {"type": "ack", "term": self.term, "from": self.me})
                return True
            elif kind == "ack":
                if self.state == "leader" and m["term"] == self.term:
                    self.acks[sender] = time.monotonic()
        return False


def start_raft() -> None:
    this_node.state["raft"] = Raft()


def raft_status() -> dict:
    return this_node.state["raft"].status()


def raft_replicate(value: str) -> float:
    return this_node.state["raft"].replicate(value)


# -- client-server ---------------------------------------------------------------------
class Server:
    """A store that knows each client by the address its connection comes from."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.clients: set[str] = set()
        self.conns: list[socket.socket] = []
        self.listener = socket.create_server((this_node.host, this_node.port("app")))
        threading.Thread(target=self._accept, daemon=True).start()
        this_node.on_reset(self.stop)

    def stop(self) -> None:
        self.listener.close()
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                conn, address = self.listener.accept()
            except OSError:
                return
            self.clients.add(address[0])
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, address[0]), daemon=True).start()

    def _serve(self, conn: socket.socket, client: str) -> None:
        with conn:
            for line in conn.makefile():
                key, value = line.rstrip("\n").split("=", 1)
                self.data[key] = value
                conn.sendall(f"{client}\n".encode())


def start_server() -> None:
    this_node.state["server"] = Server()


def server_clients() -> list[str]:
    return sorted(this_node.state["server"].clients)


def client_put(server: str, key: str, value: str, timeout: float = 1.0) -> tuple[str, float]:
    """Store key=value on the server node named ``server`` over this node's
    connection to it (made on first use, again after a failure); returns the
    address the server saw, or the error's name, and the seconds it took."""
    started = time.monotonic()
    conn = this_node.state.get("conn")
    try:
        if conn is None:
            conn = socket.create_connection(this_node.peers("app")[server], timeout=timeout)
            this_node.state["conn"] = conn
            this_node.state["reader"] = conn.makefile()
            this_node.on_reset(conn.close)
        conn.settimeout(timeout)
        conn.sendall(f"{key}={value}\n".encode())
        seen = this_node.state["reader"].readline().strip()
        if not seen:
            raise ConnectionResetError("closed")
        return seen, time.monotonic() - started
    except OSError as exc:
        this_node.state.pop("conn", None)
        if conn is not None:
            conn.close()
        return type(exc).__name__, time.monotonic() - started
