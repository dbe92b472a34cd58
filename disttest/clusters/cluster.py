"""Cluster: the handle a test holds on a group of nodes.

A Cluster is a *view* lent by the pool: the first ``size`` nodes of a pooled
group of processes. Several classes over a run may see views of the same
processes (after a reset in between), which is how one start serves many.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from disttest.clusters.faults import node_name as _name
from disttest.clusters.node import Node
from disttest.clusters.rpc import call_each
from disttest.errors import DisttestError, NetworkModeError

__unittest = True  # a failed call shows from the test's line (see node.py)


class Cluster:
    """A live group of nodes: call into all of them, watch their health, stop them."""

    def __init__(self, cluster_id: str, nodes: list[Node], *, pool=None, entry=None,
                 simulated: bool = False, network: str = "direct",
                 startup_timeout: float = 30.0) -> None:
        self.id = cluster_id
        self.nodes: list[Node] = list(nodes)
        self.simulated = simulated
        self.network = network
        self._pool = pool
        self._entry = entry
        self._startup_timeout = startup_timeout

    # -- a sequence of nodes --------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __getitem__(self, index):
        return self.nodes[index]

    def view(self, size: int) -> "Cluster":
        """The first ``size`` nodes as a cluster of their own (same processes)."""
        if size == len(self.nodes):
            return self
        return Cluster(self.id, self.nodes[:size], pool=self._pool, entry=self._entry,
                       simulated=self.simulated, network=self.network,
                       startup_timeout=self._startup_timeout)

    def node(self, name: str) -> Node:
        """The node called ``name`` (e.g. "node-1")."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise DisttestError(f"cluster {self.id} has no node named {name!r}",
                            f"its nodes are {', '.join(n.name for n in self.nodes)}",
                            kind="no-such-node")

    def __repr__(self) -> str:
        kind = "simulated " if self.simulated else ""
        return f"<{kind}Cluster {self.id} of {len(self.nodes)} nodes>"

    # -- working with every node ---------------------------------------------
    def call_all(self, fn: Callable, *args: Any, **kwargs: Any) -> list[Any]:
        """Run ``fn`` on every node in parallel; results in node order.

        Every request is sent before any reply is read, so the nodes work at
        the same time without a thread per node. If any node raises, the first
        error (in node order) is raised after every reply has been read, so no
        call is left running behind the test.
        """
        __tracebackhide__ = True
        return call_each(self.nodes, fn, args, kwargs)

    def healthy(self) -> bool:
        """True when every node is alive and answers a ping."""
        return not self.unhealthy()

    def unhealthy(self) -> dict[str, str]:
        """The nodes that do not answer a ping, each with why (empty when healthy)."""
        problems = {}
        for node in self.nodes:
            try:
                node.ping(timeout=2.0)
            except Exception as exc:
                problems[node.name] = str(exc).splitlines()[0]
        return problems

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until every node answers, or raise naming the ones that do not."""
        timeout = self._startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            problems = self.unhealthy()
            if not problems:
                return
            if time.monotonic() >= deadline:
                detail = "; ".join(f"{name}: {why}" for name, why in problems.items())
                raise DisttestError(f"cluster {self.id} is not healthy after {timeout:g}s",
                                    detail, ["restart dead nodes with node.restart()",
                                             "resume paused nodes with node.resume()"],
                                    kind="unhealthy")
            time.sleep(0.05)

    def info(self) -> dict[str, Any]:
        """Id, size, mode and every node's name, pid, liveness, host and ports."""
        return {"id": self.id, "size": len(self.nodes), "simulated": self.simulated,
                "network": self.network,
                "network_reason": getattr(self._entry.faults, "mode_reason", "declared")
                if self._entry is not None else "declared",
                "nodes": [{"name": n.name, "index": n.index, "pid": n.pid, "alive": n.alive,
                           "host": n.host, "ports": n.ports} for n in self.nodes]}

    # -- network faults --------------------------------------------------------
    def partition(self, *groups, mode: str = "drop") -> None:
        """Cut the network between groups of nodes (``mode`` "drop" or "reject").

        Nodes named in no group form one more group. Replaces earlier cuts.
        """
        named = [[_name(n) for n in g] for g in groups]
        self._faults("partition()").partition(*named, mode=mode)
        self._announce("partition", groups=named, mode=mode)
        self._check_bypass()

    def isolate(self, node, mode: str = "drop") -> None:
        """Cut ``node`` off from every other node, both ways."""
        self._faults("isolate()").isolate(_name(node), mode=mode)
        self._announce("isolate", node=_name(node), mode=mode)
        self._check_bypass()

    def cut(self, a, b, both_ways: bool = True, mode: str = "drop") -> None:
        """Cut the link from ``a`` to ``b`` (and back, unless ``both_ways=False``)."""
        self._faults("cut()").cut(_name(a), _name(b), both_ways=both_ways, mode=mode)
        self._announce("cut", **{"from": _name(a), "to": _name(b)}, both_ways=both_ways,
                       mode=mode)
        self._check_bypass()

    def delay(self, a, b, seconds: float, jitter: float = 0.0) -> None:
        """Add ``seconds`` (± ``jitter``) of latency to traffic from ``a`` to ``b``."""
        self._faults("delay()").delay(_name(a), _name(b), seconds, jitter)
        self._announce("delay", **{"from": _name(a), "to": _name(b)}, seconds=seconds,
                       jitter=jitter)
        self._check_bypass()

    def heal(self) -> None:
        """Clear every cut and delay."""
        self._faults("heal()").heal()
        self._announce("heal")

    def faults(self) -> list[dict]:
        """The faults in force now."""
        network = self._entry.faults if self._entry is not None else None
        return network.faults() if network is not None else []

    def fault_history(self) -> list[dict]:
        """What the holder did to the cluster since it was lent, oldest first: the
        network faults (a heal only when something was in force) and what was
        done to its nodes (kill, terminate, pause, restart)."""
        network = self._entry.fault_history() if self._entry is not None else []
        in_force, history = False, []
        for fault in network:
            if fault["kind"] == "heal":
                if not in_force:
                    continue  # nothing to heal: a clean-up, not a fault
                in_force = False
            elif not (fault["kind"] == "delay" and not fault.get("seconds")):
                in_force = True
            history.append(fault)
        history += [dict(action) for node in self.nodes for action in node.actions]
        return sorted(history, key=lambda fault: fault.get("time", 0.0))

    def _announce(self, kind: str, **data: Any) -> None:
        events = getattr(self._pool, "events", None)
        if events is not None:
            events.emit("fault", cluster=self.id, fault=kind, **data)

    def _check_bypass(self) -> None:
        """A proxy network warns about connections that do not go through it."""
        check = getattr(self._entry.faults, "check_bypass", None) if self._entry else None
        if check is not None and not self.simulated:
            check(self.nodes)

    def _faults(self, what: str):
        network = self._entry.faults if self._entry is not None else None
        if network is None:
            raise NetworkModeError(
                f"{what} needs a cluster whose network can be cut; cluster {self.id} uses "
                f"network = {self.network!r}",
                "with network = 'direct' nodes reach each other's ports directly, so nothing "
                "sits between them to cut",
                ['declare network = "auto" on the test class: network namespaces where this '
                 'machine allows them (as root, or unprivileged user namespaces), else '
                 'network = "proxy"'])
        return network

    # -- lifetime --------------------------------------------------------------
    def stop(self) -> None:
        """Stop every node of this cluster now (it is not lent again)."""
        if self._pool is not None:
            self._pool.stop(self)
        else:
            for node in self.nodes:
                node.stop_process(5.0)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.release(self)
        else:
            self.stop()
