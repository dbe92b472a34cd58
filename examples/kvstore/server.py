"""One replica of kvstore, a small replicated key-value store (stdlib only).

Every node runs one replica: ``cluster.call_all(server.start)`` from a test.
The replicas elect a leader and replicate writes with a reduced Raft:

* Terms and votes. A follower that hears nothing from a leader for a random
  150-300 ms becomes a candidate: it starts a new term, votes for itself and
  asks the others for their vote. A node votes once per term, and only for a
  candidate whose log is at least as up to date as its own. A majority of
  votes makes a leader.
* Log replication. The leader appends each write to its log and sends the
  new entries with its heartbeats (AppendEntries, every 50 ms). An entry is
  *committed* once a majority holds it; only then is it applied to the
  key-value data and the client's PUT answered.
* Exactly once. A client that gets no answer tries again, maybe at another
  node, with the same request id; the log may then hold the write twice,
  and only its first committed copy is applied. Without that, a retried
  write would take effect a second time, after writes that followed it.
* Reads. ``get`` answers from the node's own committed data: cheap, maybe
  stale. ``get(consistent=True)`` is served by the leader only, after a round
  of heartbeats acknowledged by a majority proves it still *is* the leader —
  an old leader cut off from the others cannot get that proof and refuses.

Left out to stay short (a real store needs them): durable storage (a
restarted node comes back empty and catches up from the leader), pre-vote
(a node cut off keeps raising its term and disrupts the leader when it comes
back), log compaction and membership changes.

Peers are always reached at the addresses ``this_node.peers("app")`` gives:
under ``network = "proxy"`` those are proxies the test uses to cut or slow
the links.

The wire protocol is one JSON object per line over TCP, on the node's "app"
port, for clients and peers alike (see ``Replica.handle``).
"""
from __future__ import annotations

import json
import random
import socket
import socketserver
import sys
import threading
import time

from disttest import this_node

ELECTION_TIMEOUT = (0.15, 0.30)  # seconds without a leader before standing for election
HEARTBEAT_INTERVAL = 0.05        # how often a leader reaches every follower
RPC_TIMEOUT = 0.25               # a peer silent for this long counts as unreachable
READ_TIMEOUT = 1.0               # how long a consistent read may wait for its proof

# -- The deliberate bug -----------------------------------------------------------
# STALE_LEADER_READS = True makes a leader answer consistent reads from its
# local data straight away, without the heartbeat round that proves it is still
# the leader. A leader cut off from the others then keeps answering with values
# the new leader has long overwritten. The test suite switches it on with
# ``node.call(server.set_stale_leader_reads, True)`` to show the bug is caught.
STALE_LEADER_READS = False


def _log(message: str) -> None:
    # Node output goes to the node's log: read it with node.logs().
    print(f"[kvstore {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Replica:
    """The replicated state machine of one node: its Raft state and its data."""

    def __init__(self, name: str, peers: dict[str, tuple[str, int]],
                 node_stopping: threading.Event) -> None:
        self.name = name
        self.peers = dict(peers)              # peer name -> address to reach it
        self.size = len(self.peers) + 1
        self.lock = threading.Condition()     # guards everything below; notified on change
        self.stopped = threading.Event()
        self.node_stopping = node_stopping    # set by disttest when the node is reset
        # Raft state (kept in memory only)
        self.term = 0
        self.voted_for: str | None = None
        self.role = "follower"
        self.leader: str | None = None
        self.log: list[dict] = []             # entry i (1-based) is log[i - 1]
        self.commit_index = 0
        self.data: dict = {}                  # the committed entries, applied
        self.applied_ids: set = set()         # request ids of the writes applied
        self.election_deadline = 0.0
        self._reset_election_timer()
        # candidate and leader bookkeeping, per peer
        self.votes: set[str] = set()
        self.asked: set[str] = set()
        self.next_index: dict[str, int] = {}
        self.match_index: dict[str, int] = {}
        self.last_sent: dict[str, float] = {}
        self.acked: dict[str, float] = {}     # send time of the newest heartbeat acknowledged
        self.reachable: dict[str, bool] = {}
        self.read_requested = 0.0             # a consistent read wants heartbeats sent after this
        # networking
        self.links = {peer: _PeerLink(address) for peer, address in self.peers.items()}
        self.tcp: _Server | None = None
        self.threads: list[threading.Thread] = []

    # -- life cycle ----------------------------------------------------------------
    def start(self, address: tuple[str, int]) -> None:
        self.tcp = _Server(address, self)
        self._thread(self.tcp.serve_forever, "server", 0.05)
        self._thread(self._election_timer, "election")
        for peer in self.peers:
            self._thread(self._peer_loop, f"peer-{peer}", peer)
        _log(f"{self.name} serving on {address[0]}:{address[1]}, peers {sorted(self.peers)}")

    def _thread(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=f"kvstore-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def running(self) -> bool:
        return not (self.stopped.is_set() or self.node_stopping.is_set())

    def stop(self) -> None:
        """Close the listening socket and every connection; wait for the threads."""
        self.stopped.set()
        with self.lock:
            self.lock.notify_all()
        if self.tcp is not None:
            self.tcp.shutdown()
            self.tcp.server_close()
            self.tcp.close_connections()
        for link in self.links.values():
            link.close()
        for thread in self.threads:
            thread.join(2.0)
        _log(f"{self.name} stopped")

    # -- requests (one JSON object per line; see _Handler) ---------------------------
    def handle(self, request: dict) -> dict:
        op = request.get("op")
        try:
            if op == "put":
                return self.put(request["key"], request["value"], request.get("timeout", 2.0),
                                request.get("id"))
            if op == "get":
                if request.get("consistent"):
                    return self.consistent_get(request["key"], request.get("timeout", READ_TIMEOUT))
                with self.lock:
                    return {"ok": True, "value": self.data.get(request["key"])}
            if op == "status":
                return self.status()
            if op == "vote":
                return self.on_vote(request)
            if op == "append":
                return self.on_append(request)
        except KeyError as exc:
            return {"ok": False, "error": "bad_request", "detail": f"missing {exc}"}
        return {"ok": False, "error": "bad_request", "detail": f"unknown op {op!r}"}

    def status(self) -> dict:
        with self.lock:
            return {"ok": True, "name": self.name, "role": self.role, "term": self.term,
                    "leader": self.leader, "log_length": len(self.log),
                    "commit_index": self.commit_index, "keys": len(self.data)}

    def put(self, key: str, value, timeout: float, request_id: str | None = None) -> dict:
        """Append the write to the log and answer once a majority holds it."""
        deadline = time.monotonic() + timeout
        with self.lock:
            if self.role != "leader":
                return {"ok": False, "error": "not_leader", "leader": self.leader}
            term = self.term
            self.log.append({"term": term, "key": key, "value": value, "id": request_id})
            index = len(self.log)
            self._advance_commit()  # only commits here in a cluster of one
            self.lock.notify_all()  # wake the peer threads: there is something to send
            while self.commit_index < index:
                lost = len(self.log) < index or self.log[index - 1]["term"] != term
                if lost or not self.running():
                    return {"ok": False, "error": "not_leader", "leader": self.leader}
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    # Not committed *yet*: it may still be, later. The client cannot know.
                    return {"ok": False, "error": "timeout"}
                self.lock.wait(remaining)
            if self.log[index - 1]["term"] != term:  # replaced by another leader's entry
                return {"ok": False, "error": "not_leader", "leader": self.leader}
            return {"ok": True, "index": index}

    def consistent_get(self, key: str, timeout: float) -> dict:
        """Serve a read only once a majority confirms this node still leads (ReadIndex)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            if self.role != "leader":
                return {"ok": False, "error": "not_leader", "leader": self.leader}
            if STALE_LEADER_READS:  # THE BUG: trusts that it is still the leader
                return {"ok": True, "value": self.data.get(key)}
            term = self.term
            # 1. The commit index is only known to be current once an entry of this
            #    term (the no-op appended on election) is committed.
            # 2. A majority must acknowledge heartbeats sent after the read arrived.
            #    Then no other leader can have committed anything newer.
            if not self._wait(lambda: self._term_committed(term), term, deadline):
                return {"ok": False, "error": "timeout", "detail": "leadership not confirmed"}
            asked = self.read_requested = time.monotonic()
            self.lock.notify_all()

            def confirmed() -> bool:
                return 1 + sum(sent >= asked for sent in self.acked.values()) > self.size // 2

            if not self._wait(confirmed, term, deadline):
                return {"ok": False, "error": "timeout", "detail": "leadership not confirmed"}
            return {"ok": True, "value": self.data.get(key)}

    def _wait(self, condition, term: int, deadline: float) -> bool:
        """Wait (holding the lock) until ``condition()``; False if leadership or time ran out."""
        while not condition():
            remaining = deadline - time.monotonic()
            if self.role != "leader" or self.term != term or remaining <= 0 or not self.running():
                return False
            self.lock.wait(remaining)
        return True

    def _term_committed(self, term: int) -> bool:
        return self.commit_index > 0 and self.log[self.commit_index - 1]["term"] == term

    # -- what peers ask of us ------------------------------------------------------
    def on_vote(self, request: dict) -> dict:
        with self.lock:
            if request["term"] > self.term:
                self._become_follower(request["term"])
            mine = (self._term_at(len(self.log)), len(self.log))
            theirs = (request["last_term"], request["last_index"])
            granted = (request["term"] == self.term and theirs >= mine
                       and self.voted_for in (None, request["candidate"]))
            if granted:
                self.voted_for = request["candidate"]
                self._reset_election_timer()
            return {"term": self.term, "granted": granted}

    def on_append(self, request: dict) -> dict:
        with self.lock:
            if request["term"] < self.term:  # a deposed leader: tell it the news
                return {"term": self.term, "ok": False, "length": len(self.log)}
            if request["term"] > self.term or self.role != "follower":
                self._become_follower(request["term"])
            if self.leader != request["leader"]:
                _log(f"{self.name} follows {request['leader']} in term {self.term}")
            self.leader = request["leader"]
            self._reset_election_timer()
            prev = request["prev_index"]
            if prev > len(self.log) or self._term_at(prev) != request["prev_term"]:
                # Our log does not match the leader's there: it will retry from earlier.
                return {"term": self.term, "ok": False, "length": min(len(self.log), prev - 1)}
            for offset, entry in enumerate(request["entries"]):
                index = prev + 1 + offset
                if index <= len(self.log):
                    if self.log[index - 1]["term"] == entry["term"]:
                        continue
                    del self.log[index - 1:]  # a conflicting, uncommitted suffix
                self.log.append(entry)
            last_new = prev + len(request["entries"])
            if request["commit"] > self.commit_index:
                self._commit_to(min(request["commit"], last_new))
            return {"term": self.term, "ok": True, "length": last_new}

    # -- background threads ------------------------------------------------------
    def _election_timer(self) -> None:
        while self.running():
            with self.lock:
                if self.role != "leader" and time.monotonic() >= self.election_deadline:
                    self._start_election()
            self.stopped.wait(0.01)

    def _peer_loop(self, peer: str) -> None:
        """Talk to one peer: ask for its vote, or send it entries and heartbeats."""
        link = self.links[peer]
        while self.running():
            with self.lock:
                request = self._next_request(peer)
                if request is None:
                    self.lock.wait(self._idle_time(peer))
                    continue
                sent = time.monotonic()
                if request["op"] == "append":
                    self.last_sent[peer] = sent
            reply = link.call(request, RPC_TIMEOUT)
            with self.lock:
                if request["op"] == "append":
                    self.reachable[peer] = reply is not None
                if reply is None:
                    continue
                if reply["term"] > self.term:
                    self._become_follower(reply["term"])
                elif request["op"] == "vote":
                    self._on_vote_reply(peer, request, reply)
                else:
                    self._on_append_reply(peer, request, reply, sent)

    def _next_request(self, peer: str) -> dict | None:
        if self.role == "candidate" and peer not in self.asked:
            self.asked.add(peer)
            return {"op": "vote", "term": self.term, "candidate": self.name,
                    "last_index": len(self.log), "last_term": self._term_at(len(self.log))}
        if self.role != "leader":
            return None
        last = self.last_sent[peer]
        due = (time.monotonic() >= last + HEARTBEAT_INTERVAL
               or (self.reachable[peer] and self.next_index[peer] <= len(self.log))
               or self.read_requested > last)
        if not due:
            return None
        prev = self.next_index[peer] - 1
        return {"op": "append", "term": self.term, "leader": self.name,
                "prev_index": prev, "prev_term": self._term_at(prev),
                "entries": self.log[prev:], "commit": self.commit_index}

    def _idle_time(self, peer: str) -> float:
        if self.role == "leader":
            return max(0.001, self.last_sent[peer] + HEARTBEAT_INTERVAL - time.monotonic())
        return 0.1  # woken earlier by notify_all when the role changes

    def _on_vote_reply(self, peer: str, request: dict, reply: dict) -> None:
        if self.role == "candidate" and request["term"] == self.term and reply["granted"]:
            self.votes.add(peer)
            if len(self.votes) + 1 > self.size // 2:
                self._become_leader()

    def _on_append_reply(self, peer: str, request: dict, reply: dict, sent: float) -> None:
        if self.role != "leader" or request["term"] != self.term:
            return
        self.acked[peer] = sent  # it accepted us as leader of this term at `sent`
        if reply["ok"]:
            self.match_index[peer] = max(self.match_index[peer], reply["length"])
            self.next_index[peer] = self.match_index[peer] + 1
            self._advance_commit()
        else:
            self.next_index[peer] = max(1, min(self.next_index[peer] - 1, reply["length"] + 1))
        self.lock.notify_all()

    # -- state changes (called with the lock held) ---------------------------------
    def _start_election(self) -> None:
        self.term += 1
        self.role, self.leader, self.voted_for = "candidate", None, self.name
        self.votes, self.asked = set(), set()
        self._reset_election_timer()
        _log(f"{self.name} stands for election in term {self.term}")
        if self.size == 1:
            self._become_leader()
        self.lock.notify_all()

    def _become_leader(self) -> None:
        self.role, self.leader = "leader", self.name
        for peer in self.peers:
            self.next_index[peer] = len(self.log) + 1
            self.match_index[peer] = 0
            self.last_sent[peer] = 0.0
            self.acked[peer] = 0.0
            self.reachable[peer] = True
        # A no-op entry of the new term: committing it commits every earlier entry
        # and tells the leader its commit index is current (see consistent_get).
        self.log.append({"term": self.term, "key": None, "value": None})
        _log(f"{self.name} is leader of term {self.term}")
        self._advance_commit()  # only commits here in a cluster of one
        self.lock.notify_all()

    def _become_follower(self, term: int) -> None:
        if term > self.term:
            self.term, self.voted_for, self.leader = term, None, None
        if self.role != "follower":
            _log(f"{self.name} steps down in term {self.term}")
        self.role = "follower"
        self._reset_election_timer()
        self.lock.notify_all()

    def _advance_commit(self) -> None:
        # Raft commits only entries of the current term by counting replicas;
        # earlier ones are committed along with them.
        for index in range(len(self.log), self.commit_index, -1):
            if self.log[index - 1]["term"] != self.term:
                break
            holders = 1 + sum(match >= index for match in self.match_index.values())
            if holders > self.size // 2:
                self._commit_to(index)
                break

    def _commit_to(self, index: int) -> None:
        for entry in self.log[self.commit_index:index]:
            if entry["key"] is None:  # a leader's no-op
                continue
            request_id = entry.get("id")
            if request_id is not None:
                if request_id in self.applied_ids:
                    continue  # a retried write whose first copy is applied already
                self.applied_ids.add(request_id)
            self.data[entry["key"]] = entry["value"]
        self.commit_index = index
        self.lock.notify_all()

    def _reset_election_timer(self) -> None:
        self.election_deadline = time.monotonic() + random.uniform(*ELECTION_TIMEOUT)

    def _term_at(self, index: int) -> int:
        return self.log[index - 1]["term"] if index > 0 else 0


class _PeerLink:
    """A connection to one peer, reopened after any error; one request at a time."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = tuple(address)
        self.sock: socket.socket | None = None
        self.reader = None

    def call(self, request: dict, timeout: float) -> dict | None:
        """The peer's reply, or None when it cannot be reached in time."""
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.reader = self.sock.makefile("rb")
            self.sock.settimeout(timeout)
            self.sock.sendall(json.dumps(request).encode() + b"\n")
            line = self.reader.readline()
            if not line:
                raise ConnectionError("peer closed the connection")
            return json.loads(line)
        except (OSError, ValueError):
            self.close()
            return None

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class _Handler(socketserver.StreamRequestHandler):
    """Serves one connection (a client or a peer): a JSON request per line."""

    def handle(self) -> None:
        replica = self.server.replica
        with self.server.lock:
            if self.server.closing:
                return
            self.server.connections.add(self.connection)
        try:
            for line in self.rfile:
                try:
                    request = json.loads(line)
                    reply = replica.handle(request) if isinstance(request, dict) else None
                except ValueError:
                    reply = None
                if reply is None:
                    reply = {"ok": False, "error": "bad_request", "detail": "not a JSON object"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass  # the other side went away, or stop() closed the connection
        finally:
            with self.server.lock:
                self.server.connections.discard(self.connection)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # SO_REUSEADDR: the next user can bind the port at once
    daemon_threads = True

    def __init__(self, address: tuple[str, int], replica: Replica) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.replica = replica
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.closing = False
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        with self.lock:
            self.closing = True
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the handler blocked reading it
            except OSError:
                pass


# -- the functions tests call on a node (node.call / cluster.call_all) --------------
_replica: Replica | None = None
_replica_lock = threading.Lock()


def start() -> dict:
    """Start this node's replica (if it is not running) and return its status."""
    global _replica
    with _replica_lock:
        if _replica is None:
            replica = Replica(this_node.name, this_node.peers("app"), this_node.stopping)
            replica.start(this_node.address("app"))
            _replica = replica
            this_node.on_reset(stop)  # how disttest stops it before lending the node again
        return _replica.status()


def stop() -> None:
    """Stop this node's replica; its data is gone (there is no disk)."""
    global _replica, STALE_LEADER_READS
    with _replica_lock:
        replica, _replica = _replica, None
        STALE_LEADER_READS = False
    if replica is not None:
        replica.stop()


def running() -> bool:
    return _replica is not None


def status() -> dict | None:
    """This node's role, term, leader, log length and commit index (None if stopped)."""
    replica = _replica
    return replica.status() if replica is not None else None


def set_stale_leader_reads(enabled: bool = True) -> None:
    """Switch the deliberate bug on this node (reset to off by ``stop``)."""
    global STALE_LEADER_READS
    STALE_LEADER_READS = bool(enabled)
