"""The node process: ``python -m disttest.agent`` (stdlib only).

Life of a node:

1. read the bootstrap from stdin (never argv or the environment: the cluster
   key is in it): a line holding the size in bytes, then that many bytes of a
   ``marshal``-ed dict (written by ``disttest.clusters.launcher.write_bootstrap``);
2. bind the control listener on the configured host, port 0;
3. print ``DISTTEST-READY <port> <pid>`` on stdout, then point stdout at the
   log file (stderr already is);
4. serve authenticated connections, one thread each, until stdin reaches end
   of file — which happens when the controller closes it *or dies*, so a
   killed controller never leaves a node behind.

Heavy modules (pickle, traceback) are imported after the ready line: start-up
time is on the critical path of every test run.
"""
from __future__ import annotations

import errno
import marshal
import os
import socket
import sys
import threading
import time

from disttest import containment, this_node
from disttest.clusters import protocol


def _describe(exc: BaseException, unpicklable=None) -> tuple:
    """An exception as the error description of a reply (see agent_codec)."""
    from disttest.agent_codec import describe  # after the ready line, with pickle

    return describe(exc, unpicklable)

class Agent:
    """Serves one node's requests.

    A real node runs one Agent as its process. A simulated node is an Agent
    in a thread of the controller (``simulated=True``): its ``this_node``
    context is installed per thread, and ``gate`` stands in for SIGSTOP.
    """

    def __init__(self, boot: dict, simulated: bool = False) -> None:
        self.simulated = simulated
        self.gate = threading.Event()
        self.gate.set()
        self.connections: set = set()
        self.key = bytes.fromhex(boot["key"])
        self.host = boot["host"]
        self.context = this_node.NodeContext(
            boot["name"], boot["index"], boot["host"], boot["cluster_id"],
            boot.get("ports", {}),
            {peer: {name: tuple(addr) for name, addr in ports.items()}
             for peer, ports in boot.get("peers", {}).items()}, boot.get("dir"))
        if not simulated:
            this_node.install_context(self.context)
        self.started = time.time()
        self.modules_at_start = frozenset(sys.modules)  # for op_imports
        self.last_used = time.monotonic()
        # Requests being served: thread id -> when it began (a kept node's idle
        # clock ignores one running longer than the controller's call_timeout).
        self.calls: dict[int, float] = {}
        self.kept = None  # an agent_kept.KeptLife once detached (a kept cluster)
        self.spawns = None  # an agent_spawn.SpawnedWork from the first spawn on
        self.spawns_lock = threading.Lock()
        # The requests this node serves: exactly those protocol.OPS declares.
        self.handlers = {name: getattr(self, "op_" + name) for name in protocol.OPS}
        self.listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.listener.bind((self.host, 0))
        self.listener.listen(64)

    # -- serving -----------------------------------------------------------
    def serve_forever(self) -> None:
        # Out of descriptors (EMFILE, ENFILE: idle connections, or node code that
        # leaks files) or of threads, accept() or a connection's thread fails.
        # That is never fatal: the node keeps serving the connections it has
        # (a call in flight answers on its own), says so once, and retries
        # with a growing pause while new connections wait in the backlog.
        backoff = 0.0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError as exc:
                if exc.errno not in _SHORTAGE:
                    if self.simulated:
                        return  # the simulated node was stopped
                    raise
                backoff = self._short_of(f"accept() failed: {exc.strerror}", backoff)
                continue
            try:
                threading.Thread(target=self.serve_connection, args=(conn,),
                                 name="disttest-conn", daemon=True).start()
            except RuntimeError as exc:  # can't start new thread
                conn.close()
                backoff = self._short_of(f"no thread for a connection: {exc}", backoff)
                continue
            if backoff:
                _log("accepting connections again")
                backoff = 0.0

    def _short_of(self, what: str, backoff: float) -> float:
        if not backoff:
            _log(f"{what}: serving the open connections, retrying new ones with back-off")
        backoff = min(1.0, backoff * 2 or 0.01)
        time.sleep(backoff)
        return backoff

    def serve_connection(self, conn: socket.socket) -> None:
        if self.simulated:
            this_node.install_context(self.context, thread_local=True)
        self.connections.add(conn)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn.settimeout(10)
            channel = protocol.serve_handshake(conn, self.key)
            channel.settimeout(None)
        except (OSError, EOFError, protocol.AuthenticationError) as exc:
            _log(f"refused a connection: {exc}")
            conn.close()
            return
        from disttest import agent_codec  # after the ready line: pickle comes with it

        pickle = agent_codec.load_pickle()
        try:
            while True:
                request = channel.recv()
                if self.simulated:
                    self.gate.wait()  # a paused simulated node answers nothing
                self.calls[threading.get_ident()] = time.monotonic()
                log_start = None
                try:
                    op, args = protocol.check(agent_codec.loads(request))
                    if op == "call" and not self.simulated:
                        # Where the log stood when the call came: a failure's reply says,
                        # so the controller shows what the node printed during the call.
                        log_start = _log_position()
                    reply = (protocol.OK, self.handlers[op](*args))
                except protocol.ProtocolError as exc:
                    reply = (protocol.ERR, (protocol.PROTOCOL_ERROR, str(exc), "", None))
                except BaseException as exc:  # reported to the caller, never fatal here
                    reply = (protocol.ERR, _describe(exc) + (log_start,))
                finally:
                    del self.calls[threading.get_ident()]
                    self.last_used = time.monotonic()
                try:
                    payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:
                    payload = pickle.dumps((protocol.ERR, _describe(exc, unpicklable=reply[1])))
                channel.send(payload)
        except protocol.AuthenticationError as exc:
            _log(f"dropped a connection: {exc}")
        except (EOFError, OSError):
            pass
        finally:
            self.connections.discard(conn)
            conn.close()

    def stop_simulated(self) -> None:
        """End a simulated node: no more calls; its services are asked to stop."""
        self.gate.set()
        self.listener.close()
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.run_reset_callbacks(timeout=5.0)

    # -- operations (op_<name> serves the request protocol.OPS[name]) --------
    def op_ping(self):
        return os.getpid()

    def op_call(self, fn, args, kwargs):
        # Named for what it runs, so the stacks of a call that hangs say which is which.
        name = getattr(fn, "__qualname__", "fn")
        threading.current_thread().name = f"disttest-conn (call {name})"
        return fn(*args, **kwargs)

    def op_configure(self, settings):
        self.context.configure(settings)

    def op_spawn(self, fn, args, kwargs):
        return self.spawned_work().start(fn, args, kwargs)

    def op_spawn_status(self, spawn_id, wait, reads_error):
        return self.spawned_work().status(spawn_id, wait, reads_error)

    def op_spawn_failures(self):
        return self.spawns.failures() if self.spawns is not None else []

    def spawned_work(self):
        """The node's spawned work (agent_spawn is imported on the first spawn)."""
        if self.spawns is None:
            from disttest.agent_spawn import SpawnedWork

            with self.spawns_lock:
                if self.spawns is None:
                    self.spawns = SpawnedWork(self.context, self.simulated, _describe, _log)
        return self.spawns

    def op_reset(self, timeout):
        """Give the node back clean: (the problems that stop that, ports still busy)."""
        from disttest import agent_reset

        return agent_reset.reset(self, timeout)

    def op_coverage_save(self):
        """Write the coverage data measured so far (the controller is about to
        kill or pause this node); False when the node is not measured."""
        return _coverage is not None and _coverage.save()

    def op_stacks(self):
        """[(thread name, stack text)] of every thread that runs the user's code."""
        from disttest.agent_codec import user_stacks

        return user_stacks()

    def op_info(self):
        from disttest import agent_codec

        return {"pid": os.getpid(), "name": self.context.name, "ports": dict(self.context.ports),
                "uptime_s": time.time() - self.started, "threads": threading.active_count(),
                "spawned_running": self.spawns.running() if self.spawns is not None else 0,
                "rss_bytes": agent_codec.rss_bytes()}

    def op_imports(self, project_dirs):
        from disttest.agent_imports import preloadable

        return preloadable(self.modules_at_start, project_dirs)

    def op_detach(self, ttl, lock_paths, record_path, log_path, call_timeout):
        """Outlive the controller: take over the port locks, end after ``ttl`` idle
        seconds (a request running over ``call_timeout`` counts as idle)."""
        global _detached
        self.last_used = time.monotonic()
        if self.kept is not None:  # kept again by a later run: only the TTL changes
            self.kept.ttl, self.kept.call_timeout = ttl, call_timeout
            return
        from disttest.agent_kept import KeptLife

        _detached = True
        containment.outlive_controller()
        self.kept = KeptLife(self, _log, _exit)
        self.kept.start(ttl, lock_paths, record_path, log_path, call_timeout)

    def op_attach(self):
        """A controller adopted this kept node again: the idle clock restarts."""
        self.last_used = time.monotonic()
        return os.getpid()

    def run_reset_callbacks(self, timeout: float) -> list[str]:
        """Run the on_reset callbacks (a reset, the end of a simulated node or of
        one whose controller is gone) and say what failed: see agent_reset."""
        from disttest import agent_reset

        return agent_reset.run_reset_callbacks(self.context, self.simulated, timeout,
                                               _describe, _log)

    def op_shutdown(self):
        if self.simulated:
            return self.stop_simulated()
        if self.kept is not None:
            self.kept.forget()
        threading.Thread(target=_exit_soon, name="disttest-exit", daemon=True).start()


def _exit_soon() -> None:
    time.sleep(0.01)
    _exit(0)


# accept() errors that mean "not now": descriptors or memory run out.
_SHORTAGE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _log_position() -> int | None:
    try:
        return os.lseek(2, 0, os.SEEK_CUR)  # the log is opened for appending: its end
    except OSError:
        return None


def _log(message: str) -> None:
    try:
        sys.stderr.write(f"[disttest.agent] {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _exit(code: int) -> None:
    # What node code started ends with the node (see disttest/containment.py).
    # A controller that stops us does that itself, after reporting them as
    # leaks; a kept node, or one whose controller died, has nobody else.
    if not _stopped_by_controller:
        containment.end_descendants(grace=0.5)
    if _coverage is not None:  # os._exit skips atexit, where coverage would save
        _coverage.save()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


_detached = False
_stopped_by_controller = False  # it wrote the stop word before closing our stdin
_coverage = None  # disttest.coverage_node, when the run is measured
_agent = None  # the process's Agent, for the stdin watcher


def _watch_stdin(stdin) -> None:
    # The controller holds the other end: end of file means it is gone,
    # and so should this node be — unless it was detached to be kept.
    global _stopped_by_controller
    from disttest import agent_reset  # now, while descriptors are sure to be there

    received = b""
    while True:
        try:
            chunk = stdin.read1(4096)
        except (OSError, ValueError):
            break
        if not chunk:
            break
        received = (received + chunk)[-len(protocol.STOP_WORD):]
    _stopped_by_controller = received == protocol.STOP_WORD
    if not _detached:
        if _agent is not None:
            agent_reset.run_reset_callbacks(_agent.context, False, 5.0, _describe, _log)
        _exit(0)


def main() -> None:
    global _coverage
    stdin = sys.stdin.buffer
    # marshal, not json: it is built in, while json costs milliseconds of imports.
    header = stdin.readline()
    boot = marshal.loads(stdin.read(int(header))) if header.strip().isdigit() else None
    if not boot:
        sys.stderr.write("disttest.agent: no bootstrap on stdin; nodes are started by disttest\n")
        sys.exit(2)
    if boot.get("template"):  # the node template, which forks nodes (agent_template)
        from disttest import agent_template

        return agent_template.main(boot, main)
    node_dir = boot.get("dir")
    if node_dir:  # its own working directory and TMPDIR; sys_path keeps the project's
        os.makedirs(os.path.join(node_dir, "tmp"), exist_ok=True)
        os.environ["TMPDIR"] = os.path.join(node_dir, "tmp")
        # Processes the node starts (python -m myservice) import from the
        # project as they did from the test's working directory.
        inherited = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = boot["cwd"] + (os.pathsep + inherited if inherited else "")
    os.chdir(node_dir or boot["cwd"])
    sys.path[:] = boot["sys_path"] + [p for p in sys.path if p not in boot["sys_path"]]
    os.environ.update(boot.get("env", {}))
    if boot.get("coverage"):  # the run is measured: so is this node, from here on
        from disttest import coverage_node

        coverage_node.start(boot["coverage"])
        _coverage = coverage_node
    global _agent
    agent = _agent = Agent(boot)
    port = agent.listener.getsockname()[1]
    os.write(1, f"{protocol.READY_PREFIX} {port} {os.getpid()}\n".encode())
    os.dup2(2, 1)  # from now on stdout goes to the node's log, like stderr
    _log(f"node {boot['name']} of cluster {boot['cluster_id']} (pid {os.getpid()}) "
         f"serving on {agent.host}:{port}")
    threading.Thread(target=_watch_stdin, args=(stdin,), name="disttest-stdin",
                     daemon=True).start()
    # Built in and cheap: a crash in C code (SIGSEGV, SIGBUS, SIGABRT, ...) leaves
    # the Python traceback of every thread in the node's log (its stderr).
    import faulthandler

    faulthandler.enable(all_threads=True)
    problem = containment.contain(boot.get("controller_pid"))
    if problem:
        _log(f"{problem}: processes started by node code may outlive it")
    from disttest import agent_codec

    agent_codec.main_path = boot.get("main_path")
    if boot.get("preload"):
        agent_codec.load_pickle()
    try:
        agent.serve_forever()
    except KeyboardInterrupt:
        _exit(1)


if __name__ == "__main__":
    main()
