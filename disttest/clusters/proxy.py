"""Network faults without privileges: TCP proxies owned by the controller.

With ``network = "proxy"`` a node never connects to a peer's port directly.
For every (observer, peer, port name) the controller listens on a port of its
own and forwards what the observer sends to the peer's real port. Because the
proxy knows which link every byte travels on, it can partition the network,
cut a link one way, and add latency, as an ordinary user.

Directed links: X→Y carries the bytes flowing from node X to node Y. On a
connection made by observer X through route (X, Y, port), client→server bytes
travel X→Y and server→client bytes travel Y→X.

Things that don't work, and what is done instead:

* A thread per connection direction costs a GIL hand-off on every hop
  (measured: slower than one loop), and sleeping in a reading loop to add
  latency stalls the stream. Solution: one event-loop thread per network,
  non-blocking sockets on epoll (any selector elsewhere), write buffers with
  backpressure, and delayed chunks timestamped into a release queue per
  connection direction.
* Changing fault state from the test thread while the loop forwards bytes
  races with it. Solution: every change runs *in* the loop (a command list
  and a wake-up socketpair); the caller waits until it has been applied, so
  when ``partition()`` returns no further byte crosses the cut.
* A cut connection cannot be resumed honestly: the bytes a real network would
  have lost are gone, so both ends disagree about the stream. Solution: a
  connection that was ever cut in "drop" mode is reset as soon as none of its
  directions is cut any more (``heal()``, or a new partition that no longer
  separates its nodes); clients reconnect, as they would after a real network
  timed the connection out.
* Every proxied hop costs a thread wake-up and three system calls
  (``epoll_wait``, ``recv``, ``send``); on loopback that is most of a round
  trip, in C as in Python. Polling without sleeping for a while after
  activity (``spin``) saves the wake-up on an idle machine, but on a busy one
  it takes the CPU the nodes need and makes round trips slower (measured in
  docs/performance.md), so it is off unless asked for.

The facade is here; the loop thread in proxy_loop.py, the data path (buffers,
delays, the poller) in proxy_streams.py.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from disttest.clusters.faults import MODES, FaultRules, NetworkFaultError, node_name
from disttest.clusters.proxy_loop import ProxyLoop
from disttest.clusters.proxy_streams import closed_error

__all__ = ["ProxyNetwork", "NetworkFaultError", "MODES"]


def beyond_loopback(host: str) -> str | None:
    """How far beyond this machine an address listens, or None for loopback."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "a name, which may resolve to any interface"
    if address.is_loopback:
        return None
    return "every interface" if address.is_unspecified else "a non-loopback interface"


class ProxyNetwork(FaultRules):
    """All proxies of one cluster, and the faults currently applied.

    Fault methods may be called from any thread; each returns once its change
    is in force. ``events``: an event bus; the only event emitted is a
    "warning" if the proxy thread stops on an error. ``spin``: seconds the loop
    keeps polling without sleeping after activity (0: always sleep).
    """

    mode = "proxy"
    _members = "faults apply to the nodes whose traffic goes through this proxy network"
    _self_traffic = "a node's traffic to itself does not go through the proxy"
    _reject = "connections fail at once with a reset"

    def __init__(self, host: str = "127.0.0.1", events=None, spin: float = 0.0) -> None:
        self.host = host
        self.events = events
        self.spin = float(spin)
        self._lock = threading.Lock()  # held through every change: they apply one at a time
        self._nodes: set[str] = set()
        self._addresses: dict[tuple[str, str, str], tuple[str, int]] = {}
        # Replaced, never mutated, so any thread may read them.
        self._cuts: dict[tuple[str, str], str] = {}
        self._delays: dict[tuple[str, str], tuple[float, float]] = {}
        self._history: list[dict[str, Any]] = []
        self._loop: ProxyLoop | None = None  # started by the first route
        self._bypasses: set[tuple[str, str, str, int]] = set()  # warned about already
        self._closed = False
        reach = beyond_loopback(host)
        if reach and events is not None:
            events.emit("warning", message=(
                f"the network proxy listens on {host} ({reach}): other machines can connect "
                "to the nodes' proxied ports, unauthenticated; set host = \"127.0.0.1\" "
                "unless the nodes must be reached from elsewhere"))

    # -- routes ------------------------------------------------------------------
    def add_node(self, node: Any) -> None:
        """Make ``node`` known to the fault methods before it has a route."""
        with self._lock:
            self._nodes.add(node_name(node))

    def add_route(self, observer: Any, peer: Any, port_name: str,
                  target: tuple[str, int]) -> tuple[str, int]:
        """Listening proxy for observer's traffic to peer's ``port_name`` at ``target``;
        returns its ``(host, port)``.

        Idempotent: the same (observer, peer, port_name) keeps its address for the
        life of the network (stable across node restarts); a changed ``target``
        applies to the connections made from then on.
        """
        key = (node_name(observer), node_name(peer), port_name)
        target = (target[0], int(target[1]))
        with self._lock:
            address = self._run(lambda loop: loop.add_route(key, target, self.host), start=True)
            self._nodes.update(key[:2])
            self._addresses[key] = address
            return address

    # -- lifetime --------------------------------------------------------------
    def close(self) -> None:
        """Stop the loop thread and close every socket; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop = self._loop
        if loop is not None:
            loop.stop()

    def __enter__(self) -> "ProxyNetwork":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def check_bypass(self, nodes) -> list[str]:
        """Warn (once per pair and port) about nodes of ``nodes`` connected straight
        to a peer's real port, where faults cannot reach; returns the new warnings."""
        from disttest.clusters import bypass

        new = []
        for found in bypass.find(nodes):
            with self._lock:
                if found in self._bypasses:
                    continue
                self._bypasses.add(found)
            new.append(bypass.warning(*found))
            if self.events is not None:
                self.events.emit("warning", message=new[-1])
        return new

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._addresses)} routes"
        return f"<ProxyNetwork {self.host}, {state}, {len(self.faults())} faults>"

    # -- helpers (the caller holds self._lock) ------------------------------------
    def _apply(self, cuts: dict, delays: dict, heal: bool = False) -> None:
        self._run(lambda loop: loop.apply(cuts, delays, heal))
        self._cuts, self._delays = cuts, delays

    def _run(self, fn: Callable[[ProxyLoop], Any], start: bool = False) -> Any:
        if self._closed:
            raise closed_error()
        if self._loop is None:
            if not start:  # no route yet: the state is all there is to change
                return None
            self._loop = ProxyLoop(self.spin, self._cuts, self._delays, self._crashed)
        return self._loop.call(fn)

    def _crashed(self, text: str) -> None:
        if self.events is not None:
            try:
                self.events.emit("warning", message="the network proxy stopped on an error",
                                 traceback=text)
            except Exception:  # a reporter must not hide the crash from the caller
                pass
