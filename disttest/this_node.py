"""What code running on a node knows about itself (stdlib only).

Inside a node process (or a simulated node thread) this module answers
``this_node.name``, ``index``, ``host``, ``cluster_id``, ``port(name)``,
``peers(name)``, ``state``, ``dir`` (the node's own working directory, whose
``tmp`` is its ``TMPDIR``) and takes ``on_reset(callback)``. Outside a node
every lookup raises an error that says so.

The values live in a :class:`NodeContext`. A real node has one per process;
simulated nodes run as threads of the controller, so a thread-local context
takes precedence over the process one.
"""
from __future__ import annotations

import threading
TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ms on nodes

if TYPE_CHECKING:  # stdlib typing costs milliseconds at node start-up
    from typing import Any, Callable

from disttest.errors import DisttestError

__all__ = ["name", "index", "host", "cluster_id", "state", "stopping", "dir",
           "port", "address", "peers", "on_reset", "inside_node"]


class NodeContext:
    """The identity, ports and per-user state of one node."""

    def __init__(self, name: str, index: int, host: str, cluster_id: str,
                 ports: dict[str, int] | None = None,
                 peers: dict[str, dict[str, tuple[str, int]]] | None = None,
                 dir: str | None = None) -> None:
        self.name = name
        self.dir = dir  # the node's own working directory (None: it has none)
        self.index = index
        self.host = host
        self.cluster_id = cluster_id
        self.ports: dict[str, int] = dict(ports or {})
        self.peers: dict[str, dict[str, tuple[str, int]]] = dict(peers or {})
        self.state: dict[str, Any] = {}
        self.stopping = threading.Event()
        self.reset_callbacks: list[Callable[[], Any]] = []
        self.lock = threading.Lock()

    def configure(self, settings: dict[str, Any]) -> None:
        for key in ("name", "index", "host", "cluster_id", "ports", "peers"):
            if key in settings:
                setattr(self, key, settings[key])


_process_context: NodeContext | None = None
_local = threading.local()


def install_context(context: NodeContext | None, thread_local: bool = False) -> None:
    """Make ``context`` the current node (the agent and simulated nodes call this)."""
    global _process_context
    if thread_local:
        _local.context = context
    else:
        _process_context = context


def _current() -> NodeContext:
    context = getattr(_local, "context", None) or _process_context
    if context is None:
        raise DisttestError(
            "disttest.this_node is only meaningful on a node",
            "this code ran in the test process, not inside a node process",
            ["run it on a node: node.call(fn) or cluster.call_all(fn)"],
            kind="not-on-node")
    return context


def inside_node() -> bool:
    """True when the calling code runs on a node (real or simulated)."""
    return (getattr(_local, "context", None) or _process_context) is not None


def __getattr__(attr: str) -> Any:
    if attr in ("name", "index", "host", "cluster_id", "state", "stopping", "dir"):
        return getattr(_current(), attr)
    raise AttributeError(f"module 'disttest.this_node' has no attribute {attr!r}")


def port(name: str = "app") -> int:
    """This node's port called ``name`` (declared in the class's ``node_ports``)."""
    context = _current()
    try:
        return context.ports[name]
    except KeyError:
        raise DisttestError(
            f"node {context.name} has no port named {name!r}",
            f"its ports are {sorted(context.ports) or 'none'}",
            [f"add {name!r} to node_ports of the test class"], kind="no-such-port") from None


def address(name: str = "app") -> tuple[str, int]:
    """``(host, port)`` where this node should listen for ``name``."""
    return (_current().host, port(name))


def peers(name: str = "app") -> dict[str, tuple[str, int]]:
    """``{node_name: (host, port)}`` of every other node's port ``name``.

    With ``network = "proxy"`` these are this node's own proxy addresses for
    each peer, so partitions and latency apply to the traffic.
    """
    context = _current()
    return {peer: ports[name] for peer, ports in context.peers.items() if name in ports}


def on_reset(callback: Callable[[], Any]) -> Callable[[], Any]:
    """Register ``callback`` to shut down what this user started on the node.

    Callbacks run (newest first) when the node is reset between test classes,
    so the next user finds it clean. Usable as a decorator.
    """
    context = _current()
    with context.lock:
        context.reset_callbacks.append(callback)
    return callback
