"""Node: the test's handle on one node process.

How requests travel (connections, timeouts, lost nodes) is in rpc.py; this
module is what a test does with a node: identity, calls, breaking it, and
what the pool asks of it.
"""
from __future__ import annotations

import concurrent.futures
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from disttest import resources
from disttest.clusters import protocol, serialize
from disttest.clusters.launcher import Process
from disttest.clusters.launcher import tail as _tail
from disttest.clusters.remote import Spawned
from disttest.clusters.rpc import NodeRPC
from disttest.errors import DisttestError, RemoteError

# Failures of calls are shown from the test's line, not through this module:
# unittest skips frames of modules with ``__unittest``, pytest frames with
# ``__tracebackhide__``. (What went wrong on the node is in the error itself.)
__unittest = True


class Node(NodeRPC):
    """One node of a cluster: call into it, and break it."""

    def __init__(self, *, boot: dict, launcher, log_path: Path, call_timeout: float,
                 startup_timeout: float, events=None, dial=None) -> None:
        self.boot = boot
        self.name: str = boot["name"]
        self.index: int = boot["index"]
        self.host: str = boot["host"]
        self._key = bytes.fromhex(boot["key"])
        self.launcher = launcher
        self.log_path = log_path
        self.call_timeout = call_timeout or None
        self.startup_timeout = startup_timeout
        self.events = events
        self.process: Process | None = None
        self.paused = False
        self.restarts = 0     # restart() calls while lent to the current holder
        # What the current holder did to the node: {"kind", "node", "time"} for each
        # kill, terminate, pause and restart (faults, for the reports).
        self.actions: list[dict] = []
        self.current_test: str | None = None  # the test running now (set by its holder)
        self.stopped_by: str | None = None    # the test that killed or terminated it
        self.incarnation = 0  # which process this is: 0 first, +1 on every restart
        self.spawned_on_process = False  # spawn() was used on the current process
        self.settings: dict = {}
        # Whoever holds the node (a test class) is told when a process of it
        # comes up and before one it set up is stopped: ``node_started(node)``
        # and ``node_stopping(node)``.
        self.lifecycle = None
        self.metrics: list[dict] = []  # one per process this node had (restarts add more)
        self.debug = False  # emit an "rpc" event per call (--cluster-debug)
        self.stopped_on_purpose = False  # kill()/terminate() by the test: not a crash
        self._reported_pid: int | None = None
        self._free: list[protocol.Channel] = []
        # Requests sent and not answered yet: connection -> (what, perf_counter at send).
        self.in_flight: dict[protocol.Channel, tuple[str, float]] = {}
        self._lock = threading.Lock()
        # How this process opens a TCP connection to the node's address: a network
        # mode whose nodes live in namespaces this process is not in provides one.
        self._dial = dial or socket.create_connection

    # -- identity -----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The node process's pid (None for a simulated node)."""
        return self.process.pid if self.process else None

    @property
    def local_pid(self) -> int | None:
        """The pid when it is a process of this machine (not simulated, not remote)."""
        process = self.process
        if process is None or getattr(process, "remote", False):
            return None
        return process.pid

    @property
    def alive(self) -> bool:
        """True while the node process runs (a paused node is alive)."""
        return self.process is not None and self.process.alive()

    @property
    def dir(self) -> Path | None:
        """The node's own working directory (its ``tmp`` is the node's TMPDIR);
        None for a node on another host, which works in the project's directory."""
        path = self.boot.get("dir")
        return Path(path) if path else None

    def empty_dir(self) -> None:
        """Remove what is in the node's directory (while its process is down)."""
        path = self.dir
        if path is None or not path.is_dir():
            return
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        (path / "tmp").mkdir(exist_ok=True)

    @property
    def control_port(self) -> int | None:
        """The port disttest's own requests reach the node on."""
        return getattr(self.process, "control_port", None)

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.boot["ports"])

    def port(self, name: str = "app") -> int:
        """The node's port called ``name`` (declared in ``node_ports``)."""
        try:
            return self.boot["ports"][name]
        except KeyError:
            raise DisttestError(
                f"node {self.name} has no port named {name!r}",
                f"its ports are {sorted(self.boot['ports']) or 'none'}",
                [f"declare it on the test class: node_ports = ({name!r},)"],
                kind="no-such-port") from None

    def address(self, name: str = "app") -> tuple[str, int]:
        """``(host, port)`` of the node's ``name`` port: where its peers reach it.
        The test process connects to it with :meth:`connect`, in every network mode."""
        return (self.host, self.port(name))

    def connect(self, name: str = "app", timeout: float | None = 10.0) -> socket.socket:
        """A TCP connection from the test process to the node's ``name`` port.

        Works in every network mode, also ``userns``, where the node's address is
        in a namespace the test process is not in (the socket is made there;
        ``address()`` dialed from the test process reaches its own loopback). ``timeout`` bounds the connect and becomes the socket's timeout.
        """
        return self._dial(self.address(name), timeout)

    def __repr__(self) -> str:
        state = "alive" if self.alive else "dead"
        return f"<Node {self.name} pid={self.pid} {state}>"

    # -- calling ------------------------------------------------------------
    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the node and return its result."""
        __tracebackhide__ = True
        return self._request_bytes(serialize.dumps_request("call", fn, args, kwargs),
                                   getattr(fn, "__qualname__", "call"))

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Like :meth:`call`, without waiting: a Future of the result."""
        payload = serialize.dumps_request("call", fn, args, kwargs)
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                future.set_result(self._request_bytes(payload, getattr(fn, "__qualname__", "call")))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name=f"disttest-submit-{self.name}", daemon=True).start()
        return future

    def spawn(self, fn: Callable, *args: Any, **kwargs: Any) -> Spawned:
        """Start ``fn`` in the background on the node; it is stopped on reset."""
        name = getattr(fn, "__qualname__", repr(fn))
        spawn_id = self._request_bytes(serialize.dumps_request("spawn", fn, args, kwargs), name)
        self.spawned_on_process = True
        return Spawned(self, spawn_id, name)

    def spawn_failures(self) -> list[RemoteError]:
        """Errors of spawned jobs that failed and that no ``result()`` has read yet.

        Each failure is returned once. Jobs of a process that has ended are
        not asked about (their errors are in its log).
        """
        if not self.spawned_on_process or not self.alive or self.paused:
            return []
        errors = []
        for spawn_id, fn_name, (remote_type, message, text, _) in self._request("spawn_failures"):
            errors.append(RemoteError(
                f"spawned {fn_name} (job {spawn_id}) failed: {message}",
                "background work started with node.spawn raised, and no handle.result() "
                "read the error",
                ["if the test expects the job to fail, read the error: "
                 "handle.result() raises it",
                 f"the node's log has the traceback where it happened: "
                 f"nodes[{self.index}].logs()"],
                remote_type=remote_type, remote_traceback=text, node=self.name,
                job=fn_name, kind="spawn-failed"))
        return errors

    def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time of an authenticated no-op, in seconds."""
        start = time.perf_counter()
        self._request("ping", timeout=timeout)
        return time.perf_counter() - start

    def logs(self, tail: int | None = None) -> str:
        """The node's output (stdout and stderr), or its last ``tail`` lines."""
        if tail is not None:
            return _tail(self.log_path, tail)
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def spawn_status(self, spawn_id: int, wait: float,
                     reads_error: bool = True) -> tuple[str, Any]:
        """``(state, value)`` of spawned work, waiting up to ``wait`` seconds for its end.

        ``reads_error``: the caller takes a failure's error, so it is not
        reported with the test (``spawn_failures``).
        """
        return self._request("spawn_status", spawn_id, wait, reads_error)

    # -- breaking -----------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL the node process, as a crash would."""
        self._note("kill")
        self._signal_and_reap(signal.SIGKILL)

    def terminate(self, timeout: float = 5.0) -> None:
        """SIGTERM the node process and wait up to ``timeout`` for it to end."""
        self._note("terminate")
        self._signal_and_reap(signal.SIGTERM, timeout)

    def lent(self) -> None:
        """A new holder: its counters (``restarts``, ``actions``) start at zero."""
        self.restarts = 0
        self.actions = []

    def _note(self, kind: str) -> None:
        """Record and announce what is done to the node (--cluster-debug shows it)."""
        self.actions.append({"kind": kind, "node": self.name, "time": time.monotonic()})
        if kind in ("kill", "terminate"):
            self.stopped_by = self.current_test
        if self.events and kind != "restart":  # restarts have node_restarted
            self.events.emit("node_action", cluster=self.boot.get("cluster_id"), node=self.name,
                             action=kind, pid=self.pid)

    def record_metrics(self) -> None:
        """Note the current process's peak memory and CPU time before it ends."""
        metrics = resources.node_metrics(self.local_pid) if self.alive else None
        if metrics:
            self.metrics.append(dict(metrics, pid=self.pid))

    def save_coverage(self) -> None:
        """A node measured by coverage.py writes its data now (it is about to be
        killed or paused); nothing for other nodes, or one that cannot answer."""
        process = self.process
        if process is None or not getattr(process, "measured", False) or self.paused:
            return  # a paused node saved when it was paused
        try:
            self._request("coverage_save", timeout=5.0)
        except DisttestError:  # hung or gone: what it measured since its last save is lost
            pass

    def _signal_and_reap(self, signum: int, timeout: float = 5.0) -> None:
        if self.process is None:
            return
        self.stopped_on_purpose = True
        self.save_coverage()
        self.record_metrics()
        # What the node's code started goes with it: the node is their subreaper
        # (see disttest/containment.py), so its tree holds even double-forked ones.
        # A node's keeper (its template) ends that tree itself once the node is gone.
        children = (resources.process_tree(self.local_pid)
                    if self.local_pid and not self.process.has_keeper else [])
        self.process.signal(signal.SIGCONT)
        self.process.signal(signum)
        self.paused = False
        if self.process.wait(timeout) is None:
            self.process.signal(signal.SIGKILL)
            self.process.wait()
        resources.kill_all(resources.alive(children))
        self.drop_connections()

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): it holds its sockets and answers nothing."""
        if self.process is not None:
            self._note("pause")
            self.save_coverage()
            self.process.signal(signal.SIGSTOP)
            self.paused = True
            # SIGSTOP takes effect asynchronously: without this wait a call made
            # right after pause() could still be answered.
            if self.local_pid is not None:  # simulated and remote nodes wait elsewhere
                resources.wait_stopped(self.process.pid, 2.0)

    def resume(self) -> None:
        """Unfreeze a paused node (SIGCONT)."""
        if self.process is not None:
            if self.paused and self.events:  # a repair, not a fault: announced only
                self.events.emit("node_action", cluster=self.boot.get("cluster_id"),
                                 node=self.name, action="resume", pid=self.pid)
            self.process.signal(signal.SIGCONT)
            self.paused = False

    def restart(self) -> None:
        """A new process with the same name, ports and key; state starts empty.

        The holder's ``tearDownNode`` runs first when the node is still running,
        its ``setUpNode`` once the new process answers.
        """
        lifecycle = self.lifecycle
        stopping_error = None
        if self.alive and lifecycle is not None and not self.paused:
            try:
                lifecycle.node_stopping(self)
            except BaseException as exc:  # the restart still happens; raised after it
                stopping_error = exc
        self._note("restart")
        if self.alive:
            self._signal_and_reap(signal.SIGKILL)  # part of the restart, not a kill
        self.stop_process(0.0)
        with open(self.log_path, "ab") as log:
            log.write(f"--- disttest: node {self.name} restarted ---\n".encode())
        (self.process,) = self.launcher.start([self.boot], [self.log_path], self.startup_timeout)
        self.paused = False
        self.stopped_on_purpose = False
        self.restarts += 1
        self.incarnation += 1
        self.stopped_by = None
        self.spawned_on_process = False
        if self.settings:
            self._request("configure", self.settings)
        if self.events:
            self.events.emit("node_restarted", cluster=self.boot.get("cluster_id"),
                             node=self.name, pid=self.pid)
        if lifecycle is not None and lifecycle is self.lifecycle:
            lifecycle.node_started(self)
        if stopping_error is not None:
            raise stopping_error

    # -- used by the pool ---------------------------------------------------
    def use_process(self, process: Process) -> None:
        """Make ``process`` (started or adopted by the pool) this node's process."""
        self.process = process

    def configure(self, settings: dict) -> None:
        """Tell the node its ports and peers (kept across restarts)."""
        self.settings = settings
        self._request("configure", settings)

    def reset(self, timeout: float) -> tuple[list[str], list[int]]:
        """Stop the node's services and work, clear its state: (problems left, busy ports)."""
        problems, busy = self._request("reset", timeout, timeout=timeout + 5)
        return list(problems), list(busy)

    def info(self, timeout: float = 5.0) -> dict[str, Any]:
        """The node process's own view: pid, ports, uptime, threads, memory."""
        return self._request("info", timeout=timeout)

    def detach(self, ttl: float, lock_paths: list[str], record_path: str,
               timeout: float = 5.0) -> None:
        """Let the node outlive this process: it takes over ``lock_paths`` and
        ends itself after ``ttl`` idle seconds (a kept cluster); a call still
        running after this node's call_timeout does not keep it alive."""
        self._request("detach", ttl, list(lock_paths), record_path, str(self.log_path),
                      self.call_timeout, timeout=timeout)
        if self.process is not None:
            self.process.outlive_controller()

    def imports(self, project_dirs: list[str], timeout: float = 5.0) -> list[str]:
        """Modules the node imported that a node template may preload (``preload = "auto"``)."""
        return list(self._request("imports", list(project_dirs), timeout=timeout))

    def attach(self, timeout: float = 5.0) -> int:
        """Tell a kept node it is in use again; returns its pid."""
        return self._request("attach", timeout=timeout)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Ask the node to end itself (a kept node first removes its port locks)."""
        self._request("shutdown", timeout=timeout)

    def stop_process(self, timeout: float) -> None:
        self.drop_connections()
        if self.process is not None:
            self.process.stop(timeout)
