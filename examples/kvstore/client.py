"""The kvstore client: finds the leader, follows redirects, retries elsewhere.

    client = Client([("127.0.0.1", 7001), ("127.0.0.1", 7002), ("127.0.0.1", 7003)])
    client.put("colour", "blue")            # returns once a majority has it
    client.get("colour")                    # any node's committed value (may be stale)
    client.get("colour", consistent=True)   # the leader's, after it proves it still leads

A node is named either by its address ``(host, port)`` or by its name (the
names come back in ``status`` replies and in redirects).
"""
from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any, Union

NodeRef = Union[str, tuple]

ATTEMPT_TIMEOUT = 1.0  # one node gets this long before the client tries another


class KVError(Exception):
    """Base of the errors the client raises."""


class NotLeader(KVError):
    """The node asked is not the leader; ``leader`` names the one it follows, if any."""

    def __init__(self, node: NodeRef, leader: str | None) -> None:
        super().__init__(f"{node} is not the leader (its leader: {leader or 'unknown'})")
        self.node, self.leader = node, leader


class Unavailable(KVError):
    """No node could serve the request in time (no majority, no leader, unreachable)."""


class Client:
    """Talks to the nodes at ``addresses``; one short TCP connection per request."""

    def __init__(self, addresses, timeout: float = 2.0) -> None:
        self.addresses: list[tuple[str, int]] = [tuple(a) for a in addresses]
        self.timeout = timeout
        self.names: dict[str, tuple[str, int]] = {}  # learned from status replies
        self._leader: tuple[str, int] | None = None  # where the last write went

    # -- the API -----------------------------------------------------------------
    def put(self, key: str, value: Any, timeout: float = 5.0, node: NodeRef | None = None) -> int:
        """Write ``value`` (any JSON value); return its log index once committed.

        With ``node``, ask that node only: a follower raises :class:`NotLeader`.
        Otherwise follow redirects and try other nodes until ``timeout``.
        """
        # One id for every attempt: a write retried after a lost answer is
        # applied once, however often it reaches the log.
        request = {"op": "put", "key": key, "value": value, "id": uuid.uuid4().hex}
        return self._leader_request(request, timeout, node)["index"]

    def get(self, key: str, node: NodeRef | None = None, consistent: bool = False,
            timeout: float = 5.0) -> Any:
        """The value of ``key`` (None if unset).

        Plain reads come from ``node`` (else any node that answers) and may be
        stale. ``consistent=True`` reads go to the leader, which serves them only
        after confirming with a majority that it still leads.
        """
        request = {"op": "get", "key": key, "consistent": consistent}
        if consistent:
            return self._leader_request(request, timeout, node)["value"]
        targets = [self._address(node)] if node is not None else self.addresses
        errors = []
        for address in targets:
            try:
                return self._check(address, self._call(address, request, timeout))["value"]
            except (OSError, ValueError) as exc:
                errors.append(f"{address}: {exc}")
        raise Unavailable("no node answered: " + "; ".join(errors))

    def status(self, node: NodeRef, timeout: float | None = None) -> dict:
        """The node's ``role``, ``term``, ``leader``, ``log_length``, ``commit_index``, ``keys``."""
        address = self._address(node)
        reply = self._call(address, {"op": "status"}, timeout or self.timeout)
        self.names[reply["name"]] = address
        return reply

    def statuses(self, timeout: float = 0.5) -> dict[str, dict]:
        """``{name: status}`` of every node that answers within ``timeout``."""
        found = {}
        for address in self.addresses:
            try:
                reply = self.status(address, timeout)
            except (OSError, ValueError):
                continue
            found[reply["name"]] = reply
        return found

    def leader(self) -> str | None:
        """The name of the leader a majority of the nodes follows, or None.

        An old leader cut off from the others may still call itself leader, in
        an older term: the newest term a majority agrees on wins.
        """
        statuses = self.statuses()
        leaders = [s for s in statuses.values() if s["role"] == "leader"]
        if not leaders:
            return None
        best = max(leaders, key=lambda s: s["term"])
        followers = sum(1 for s in statuses.values()
                        if s["term"] == best["term"] and s["leader"] == best["name"])
        if followers * 2 <= len(self.addresses):
            return None
        self._leader = self.names[best["name"]]
        return best["name"]

    def wait_for_leader(self, timeout: float = 10.0) -> str:
        """Wait until a majority follows a leader; its name, or :class:`Unavailable`."""
        deadline = time.monotonic() + timeout
        while True:
            name = self.leader()
            if name is not None:
                return name
            if time.monotonic() >= deadline:
                raise Unavailable(f"no leader within {timeout:g}s: {self.statuses()}")
            time.sleep(0.05)

    # -- plumbing ------------------------------------------------------------------
    def _leader_request(self, request: dict, timeout: float, node: NodeRef | None) -> dict:
        deadline = time.monotonic() + timeout
        if node is not None:  # that node only
            address = self._address(node)
            try:
                return self._check(address, self._call(address, dict(request, timeout=timeout),
                                                       timeout + 1.0))
            except (OSError, ValueError) as exc:
                raise Unavailable(f"{address}: {exc}") from None
        candidates = ([self._leader] if self._leader else []) + self.addresses
        problems: list[str] = []
        while time.monotonic() < deadline:
            address = candidates.pop(0) if candidates else None
            if address is None:  # everyone tried once: pause, then go round again
                time.sleep(0.05)
                candidates = list(self.addresses)
                continue
            attempt = min(ATTEMPT_TIMEOUT, max(0.05, deadline - time.monotonic()))
            try:
                reply = self._check(address, self._call(
                    address, dict(request, timeout=attempt * 0.8), attempt))
            except NotLeader as redirect:
                problems.append(str(redirect))
                leader = self._resolve(redirect.leader)
                if leader is not None:
                    candidates.insert(0, leader)
                continue
            except Unavailable as exc:  # no quorum, or it could not confirm it leads
                problems.append(str(exc))
                continue
            except (OSError, ValueError) as exc:  # unreachable, or paused
                problems.append(f"{address}: {exc}")
                continue
            self._leader = address
            return reply
        raise Unavailable(f"{request['op']} {request['key']!r} failed within {timeout:g}s: "
                          + "; ".join(problems[-3:]))

    def _check(self, address, reply: dict) -> dict:
        if reply.get("ok"):
            return reply
        if reply.get("error") == "not_leader":
            raise NotLeader(address, reply.get("leader"))
        raise Unavailable(f"{address}: {reply.get('error')} {reply.get('detail', '')}".rstrip())

    def _resolve(self, name: str | None) -> tuple[str, int] | None:
        if name is None:
            return None
        if name not in self.names:
            self.statuses()
        return self.names.get(name)

    def _address(self, node: NodeRef) -> tuple[str, int]:
        if isinstance(node, str):
            address = self._resolve(node)
            if address is None:
                raise KeyError(f"no node named {node!r} answers")
            return address
        return tuple(node)

    @staticmethod
    def _call(address: tuple[str, int], request: dict, timeout: float) -> dict:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            with sock.makefile("rb") as reader:
                line = reader.readline()
        if not line:
            raise ConnectionError("the node closed the connection")
        return json.loads(line)
