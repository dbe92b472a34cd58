"""What comes back from a node: its errors, and handles on spawned work."""
from __future__ import annotations

import time
from typing import Any

from disttest.clusters import protocol, serialize
from disttest.errors import CallTimeoutError, DisttestError, RemoteError, SerializationError

__unittest = True  # a failed job shows from the test's line (see node.py)


def remote_error(node: str, value: tuple, output: str = "") -> DisttestError:
    """The error to raise for a node's ``(ERR, description)`` reply; ``output``:
    what the node printed while it served the request."""
    remote_type, message, traceback_text, blob = value[:4]
    if remote_type == protocol.PROTOCOL_ERROR:
        return DisttestError(f"node {node} refused a request: {message}",
                             "the node runs a different version of disttest's protocol",
                             ["start the cluster again (a kept cluster: disttest cluster stop)"],
                             kind="protocol")
    if remote_type == protocol.SERIALIZATION_ERROR:
        return SerializationError(message, "results travel back as pickles",
                                  ["return plain data (numbers, strings, lists, dicts, dataclasses)"],
                                  node=node)
    original = None
    if blob is not None:
        try:
            original = serialize.loads(blob)
        except Exception:
            original = None
    return RemoteError(message, f"raised by code running on node {node}",
                       ["read the remote traceback for where it was raised"],
                       remote_type=remote_type, remote_traceback=traceback_text, node=node,
                       remote_exception=original, node_output=output)


class Spawned:
    """Background work started with :meth:`Node.spawn`.

    A handle belongs to the node process that ran the job (``incarnation``):
    after ``node.restart()`` it answers that the job's process is gone.
    """

    def __init__(self, node, spawn_id: int, fn_name: str) -> None:  # node: a Node
        self.node, self.id, self.fn_name = node, spawn_id, fn_name
        self.incarnation = node.incarnation
        self.pid = node.pid

    def running(self) -> bool:
        """True while the work runs (an error if its node process is gone)."""
        self._check_incarnation()
        return self.node.spawn_status(self.id, 0, False)[0] == protocol.SPAWN_RUNNING

    def _check_incarnation(self) -> None:
        if self.node.incarnation != self.incarnation:
            raise DisttestError(
                f"spawned {self.fn_name} ran on {self.node.name}'s earlier process "
                f"(pid {self.pid}), which restart() replaced",
                "a job ends with the process that ran it; the new process never ran it",
                ["spawn the job again on the restarted node (setUpNode does this for "
                 "every restart)"], kind="spawn-gone", node=self.node.name)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the work to end and return its result (or raise its error)."""
        __tracebackhide__ = True
        self._check_incarnation()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            status, value = self.node.spawn_status(self.id, wait)
            if status == protocol.SPAWN_DONE:
                return value
            if status == protocol.SPAWN_ERROR:
                raise remote_error(self.node.name, value)
            if status == protocol.SPAWN_GONE:
                raise DisttestError(f"spawned {self.fn_name} on {self.node.name} was stopped "
                                    "by a reset", kind="spawn-gone")
            if deadline is not None and time.monotonic() >= deadline:
                raise CallTimeoutError(f"spawned {self.fn_name} on {self.node.name} did not "
                                       f"finish within {timeout:g}s")

    def __repr__(self) -> str:
        return f"<Spawned {self.fn_name} on {self.node.name}>"
