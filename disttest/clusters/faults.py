"""The fault rules the network modes share: partition, isolate, cut, delay, heal.

A mode (clusters/proxy.py, clusters/netns.py) keeps its nodes, its cuts (a
directed link -> "drop" or "reject") and delays (a directed link ->
(seconds, jitter)), and enforces them in ``_apply(cuts, delays, heal)``; the
rules of what each call means, their checks and the fault history live here,
once.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from disttest.errors import NetworkModeError

MODES = ("drop", "reject")


class NetworkFaultError(NetworkModeError, ValueError):
    """A network fault was asked with a wrong argument (mode, node name, delay).

    The fields name what was given (``mode``, ``node``, ``seconds``,
    ``jitter``) and what is ``allowed`` or ``known``.
    """

    kind = "network-fault"
    FIELDS = NetworkModeError.FIELDS + ("mode", "seconds", "jitter", "allowed", "known")

    def __init__(self, problem: str, cause: str = "", steps=(), *, kind: str | None = None,
                 node: str = "", remote_traceback: str = "", mode: Any = None,
                 seconds: Any = None, jitter: Any = None, allowed: Any = None,
                 known: Any = None) -> None:
        self.mode, self.seconds, self.jitter = mode, seconds, jitter
        self.allowed, self.known = allowed, known
        super().__init__(problem, cause, steps, kind=kind, node=node,
                         remote_traceback=remote_traceback)


def node_name(node: Any) -> str:
    """A node name, from a name or anything with a ``name`` (a Node)."""
    return node if isinstance(node, str) else str(getattr(node, "name", node))


def _check_mode(mode: Any, what: str, reject: str) -> None:
    if mode not in MODES:
        raise NetworkFaultError(
            f"{what}(mode={mode!r}): mode must be one of {', '.join(map(repr, MODES))}",
            "'drop' makes packets vanish (connections hang until their timeout); "
            f"'reject' refuses them ({reject})",
            ["pass mode='drop' or mode='reject'"], mode=mode, allowed=MODES)


class FaultRules:
    """Subclasses set ``_lock``, ``_nodes`` (names), ``_cuts``, ``_delays``,
    ``_history``, ``_addresses`` and implement ``_apply``."""

    mode = ""                 # the network mode: "proxy", "netns" or "userns"
    mode_reason = "declared"  # why the cluster got this mode (``network = "auto"``)
    _members = "faults apply to the nodes of this network"       # why a node is unknown
    _self_traffic = "a node's traffic to itself cannot be cut"   # why a==b is refused
    _reject = "connections fail at once"                         # what 'reject' does

    def _apply(self, cuts: dict, delays: dict, heal: bool = False) -> None:
        raise NotImplementedError

    def routes_for(self, observer: Any) -> dict[str, dict[str, tuple[str, int]]]:
        """``{peer: {port_name: (host, port)}}``: where ``observer`` reaches each peer."""
        observer = node_name(observer)
        found: dict[str, dict[str, tuple[str, int]]] = {}
        for (obs, peer, port_name), address in sorted(self._addresses.copy().items()):
            if obs == observer:
                found.setdefault(peer, {})[port_name] = address
        return found

    def partition(self, *groups: Iterable[Any], mode: str = "drop") -> None:
        """Nodes in different groups cannot reach each other (both ways); nodes named
        in no group form one extra group. Replaces the current cuts (not delays)."""
        _check_mode(mode, "partition", self._reject)
        named = [[node_name(n) for n in ([g] if isinstance(g, str) or hasattr(g, "name") else g)]
                 for g in groups]
        with self._lock:
            side: dict[str, int] = {}
            for index, group in enumerate(named):
                for node in group:
                    self._check_node(node, "partition")
                    if side.setdefault(node, index) != index:
                        raise NetworkFaultError(
                            f"partition(): node {node!r} is in two groups",
                            "each node is on one side of a partition",
                            ["name each node in one group only"], node=node)
            rest = sorted(set(self._nodes) - set(side))
            side.update((node, len(named)) for node in rest)
            cuts = {(x, y): mode for x in side for y in side if side[x] != side[y]}
            self._apply(cuts, self._delays)
            self._record("partition", groups=[g for g in named if g] + ([rest] if rest else []),
                         mode=mode)

    def isolate(self, node: Any, mode: str = "drop") -> None:
        """Cut ``node`` from every other node, both ways; adds to the current cuts."""
        _check_mode(mode, "isolate", self._reject)
        node = node_name(node)
        with self._lock:
            self._check_node(node, "isolate")
            cuts = dict(self._cuts)
            for other in set(self._nodes) - {node}:
                cuts[(node, other)] = cuts[(other, node)] = mode
            self._apply(cuts, self._delays)
            self._record("isolate", node=node, mode=mode)

    def cut(self, a: Any, b: Any, both_ways: bool = True, mode: str = "drop") -> None:
        """Cut the link a→b (and b→a when ``both_ways``); adds to the current cuts."""
        _check_mode(mode, "cut", self._reject)
        a, b = node_name(a), node_name(b)
        with self._lock:
            self._check_pair(a, b, "cut")
            cuts = dict(self._cuts)
            cuts[(a, b)] = mode
            if both_ways:
                cuts[(b, a)] = mode
            self._apply(cuts, self._delays)
            self._record("cut", **{"from": a, "to": b}, both_ways=bool(both_ways), mode=mode)

    def delay(self, a: Any, b: Any, seconds: float, jitter: float = 0.0) -> None:
        """Latency on the traffic flowing from a to b: each chunk (proxy) or packet
        (netns) is released ``seconds ± uniform(jitter)`` later, in order. 0 s removes it."""
        a, b = node_name(a), node_name(b)
        seconds, jitter = float(seconds), float(jitter)
        if not (0 <= seconds <= 3600 and 0 <= jitter <= seconds):
            raise NetworkFaultError(
                f"delay({a!r}, {b!r}, {seconds!r}, jitter={jitter!r}): seconds must be "
                "between 0 and 3600, and jitter between 0 and seconds",
                "traffic cannot arrive before it was sent",
                ["pass 0 <= jitter <= seconds"], seconds=seconds, jitter=jitter)
        with self._lock:
            self._check_pair(a, b, "delay")
            delays = dict(self._delays)
            if seconds:
                delays[(a, b)] = (seconds, jitter)
            else:
                delays.pop((a, b), None)
            self._apply(self._cuts, delays)
            self._record("delay", **{"from": a, "to": b}, seconds=seconds, jitter=jitter)

    def heal(self) -> None:
        """Clear every cut and delay; what is still delayed is released now."""
        with self._lock:
            self._apply({}, {}, heal=True)
            self._record("heal")

    def faults(self) -> list[dict[str, Any]]:
        """The faults in force, one entry per directed link."""
        cuts, delays = self._cuts, self._delays
        found = [{"kind": "cut", "from": a, "to": b, "mode": mode}
                 for (a, b), mode in sorted(cuts.items())]
        found += [{"kind": "delay", "from": a, "to": b, "seconds": s, "jitter": j}
                  for (a, b), (s, j) in sorted(delays.items())]
        return found

    def history(self) -> list[dict[str, Any]]:
        """Every fault call applied, in order, each with its ``time.monotonic()``."""
        with self._lock:
            return [dict(entry) for entry in self._history]

    def _check_node(self, node: str, what: str) -> None:
        if node not in self._nodes:
            known = ", ".join(sorted(self._nodes)) or "none yet"
            raise NetworkFaultError(
                f"{what}(): unknown node {node!r}; the known nodes are: {known}",
                self._members,
                [f"name one of: {known}"], node=node, known=sorted(self._nodes))

    def _check_pair(self, a: str, b: str, what: str) -> None:
        self._check_node(a, what)
        self._check_node(b, what)
        if a == b:
            raise NetworkFaultError(f"{what}(): node {a!r} is named twice",
                                    self._self_traffic,
                                    ["name two different nodes"], node=a)

    def _record(self, kind: str, **data: Any) -> None:
        self._history.append({"kind": kind, "time": time.monotonic(), **data})
