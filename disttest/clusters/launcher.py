"""Launchers: how node agents come to life.

``LocalLauncher`` starts ``python -m disttest.agent`` processes with the
controller's own interpreter, all at once, writes each one its bootstrap on
stdin and waits for the one-line ready reports together, so an N-node start
costs about one interpreter start, not N.
"""
from __future__ import annotations

import errno
import marshal
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import disttest
from disttest import coverage_support
from disttest.clusters import protocol, spawner
from disttest.errors import ClusterStartError

# The agent must import the same disttest as the controller, even when that
# one is not installed (a source checkout on sys.path).
PACKAGE_PARENT = str(Path(disttest.__file__).resolve().parent.parent)
# What every launcher runs with ``python -c``: ``-c`` rather than ``-m``, since
# runpy alone costs milliseconds per node, and the controller's own disttest
# first on sys.path, ahead of the working directory, which might hold another copy.
AGENT_CODE = (f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
              "from disttest.agent import main; main()")


def write_bootstrap(stream, boot: dict) -> bool:
    """Write ``boot`` the way the agent reads it: a line with the size in bytes,
    then the ``marshal``-ed dict. False when the reader is already gone."""
    # marshal, not json: the agent has it built in, json costs it milliseconds.
    blob = marshal.dumps(boot)
    try:
        stream.write(b"%d\n" % len(blob) + blob)
        stream.flush()
    except BrokenPipeError:
        return False
    return True


def tail(path: Path | str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# Environment variables that decide whether an interpreter can start at all.
_STARTUP_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONPLATLIBDIR", "PYTHONSTARTUP",
                      "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONEXECUTABLE")


class Process:
    """One agent process, owned by exactly one Node."""

    def __init__(self, popen: subprocess.Popen, log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path
        self.control_port: int | None = None
        self.measured = False  # by coverage.py: saves its data when asked (coverage_save)
        self.let_go = False  # kept: it outlives this process (outlive_controller)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to end; None if it is still running after ``timeout``."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signum)
            except ProcessLookupError:
                pass

    #: Does something other than the controller end what the node leaves when
    #: it ends (a template: disttest/clusters/template_process.py)?
    has_keeper = False

    def outlive_controller(self) -> None:
        """The node is kept. A spawned node's parent is the controller, which
        lets it go by exiting."""
        if not self.let_go:
            # Our child until we exit: a thread waits for it, so that if it ends
            # first it leaves no zombie, and its Popen is never dropped unwaited
            # (which warns "subprocess N is still running" while it runs on).
            self.let_go = True
            threading.Thread(target=self.popen.wait, name=f"disttest-kept-{self.pid}",
                             daemon=True).start()

    def left_behind(self) -> list[int]:
        """Processes the ended node left that its keeper killed: none here."""
        return []

    def close_stdin(self) -> None:
        """Tell the node to stop: the stop word, then end of file."""
        try:
            if self.popen.stdin and not self.popen.stdin.closed:
                try:
                    self.popen.stdin.write(protocol.STOP_WORD)
                    self.popen.stdin.flush()
                except OSError:  # it has ended already
                    pass
                self.popen.stdin.close()
        except OSError:
            pass

    def stop(self, timeout: float) -> None:
        """Ask (close stdin), then insist (SIGKILL), then reap."""
        self.close_stdin()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.popen.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for stream in (self.popen.stdin, self.popen.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass


def spawn_error(exc: OSError, name: str, executable: str | None = None,
                 cwd: str | None = None) -> ClusterStartError:
    """The diagnosis of a node process that could not even be created."""
    executable = executable or sys.executable
    if exc.errno == errno.E2BIG:
        return ClusterStartError(
            f"could not start the process of node {name}: its environment is too large",
            "node_env is passed in the node process's environment, and the system limits "
            f"its size (E2BIG: {exc.strerror})",
            ["keep large data out of node_env: send it with node.call() instead"],
            kind="spawn-environment")
    if exc.errno in (errno.EAGAIN, errno.ENOMEM):
        cause = ("the system refused to create another process "
                 f"({errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror})")
        steps = ["lower cluster sizes or max_cluster_size",
                 "raise the process limit (ulimit -u) or free memory"]
        kind = "spawn-resources"
    elif exc.errno == errno.EMFILE:
        cause = "the controller has too many open files"
        steps = ["raise the open-file limit: ulimit -n 4096"]
        kind = "too-many-files"
    elif exc.errno in (errno.ENOENT, errno.EACCES) and cwd and exc.filename == cwd:
        # Popen reports a missing working directory with the same errno.
        cause = f"the working directory {cwd!r} of the test process is gone ({exc.strerror})"
        steps = ["do not remove the directory the tests run in while they run "
                 "(a test that deletes its temporary cwd should chdir out first)"]
        kind = "spawn-cwd"
    elif exc.errno in (errno.ENOENT, errno.EACCES):
        program = exc.filename or executable  # what the system could not run
        what = "the interpreter" if program == executable else "the program"
        cause = f"{what} {program!r} cannot be executed ({exc.strerror})"
        steps = ["run the tests with an interpreter that exists and is executable"]
        kind = "spawn-executable"
    else:
        cause, steps, kind = f"{type(exc).__name__}: {exc}", [], "spawn"
    return ClusterStartError(f"could not start the process of node {name}", cause, steps,
                             kind=kind)


class ReadyLines:
    """Waits for every started node's ready line on its stdout, all at once.

    A launcher provides ``_ended(process, boot)`` (the diagnosis when stdout
    closes first), ``_not_ready(process, boot, timeout)``, and may override
    ``_other_line`` (a line before the ready line) and ``_ready`` (what the
    ready line's port and pid mean for its processes).
    """

    def _wait_ready(self, processes: list, boots: list[dict], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending: dict = {}
        with selectors.DefaultSelector() as selector:
            for process, boot in zip(processes, boots):
                selector.register(process.popen.stdout, selectors.EVENT_READ, (process, boot))
                pending[process] = b""
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    process, boot = next((p, b) for p, b in zip(processes, boots) if p in pending)
                    raise self._not_ready(process, boot, timeout)
                for key, _ in selector.select(remaining):
                    process, boot = key.data
                    chunk = os.read(key.fd, 4096)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        raise self._ended(process, boot)
                    pending[process] += chunk
                    while process in pending and b"\n" in pending[process]:
                        line, pending[process] = pending[process].split(b"\n", 1)
                        if line.startswith(_READY):
                            _, port, pid = line.decode().split()
                            self._ready(process, int(port), int(pid))
                            del pending[process]
                            selector.unregister(key.fileobj)
                            process.popen.stdout.close()
                        else:
                            self._other_line(process, line)

    def _ready(self, process, port: int, pid: int) -> None:
        process.control_port = port

    def _other_line(self, process, line: bytes) -> None:
        # Something printed before the agent's ready line: keep it, it is not ours.
        with open(process.log_path, "ab") as log:
            log.write(b"[disttest] before the ready line: " + line + b"\n")


_READY = protocol.READY_PREFIX.encode() + b" "


class LocalLauncher(ReadyLines):
    """Starts nodes as local processes of this interpreter."""

    simulated = False

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or sys.executable

    def command(self) -> list[str]:
        return [self.executable, "-c", AGENT_CODE]

    def command_of(self, boot: dict) -> list[str]:
        """The command line of the node ``boot`` describes."""
        return list(boot.get("exec_prefix", ())) + self.command()

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # node output reaches its log as it happens
        return env

    def start(self, boots: list[dict], log_paths: list[Path], timeout: float) -> list[Process]:
        """Start one agent per bootstrap; all ready, or none left running."""
        started: list[Process] = []
        began = time.perf_counter()
        env = self.environment()
        try:
            for boot, log_path in zip(boots, log_paths):
                with open(log_path, "ab") as log:
                    try:
                        popen = self._create(boot, log, {**env, **boot.get("env", {})})
                    except OSError as exc:
                        raise spawn_error(exc, boot["name"], self.executable,
                                           boot["cwd"]) from None
                process = self._process(popen, log_path)
                started.append(process)
                measure = coverage_support.node_settings(boot["cluster_id"], boot["name"])
                if measure is not None:  # the run is measured: the node measures itself
                    boot = dict(boot, coverage=measure)
                    process.measured = True
                # The node asks to be ended with its parent.
                if not write_bootstrap(popen.stdin, dict(boot, controller_pid=self._parent_pid(popen))):
                    # it died before reading it
                    popen.wait(2.0)
                    raise self._crashed(process, boot) from None
            spawned = time.perf_counter()
            self._wait_ready(started, boots, timeout)
            # Where a start's time went: creating the processes, then their imports
            # up to the ready line (the pool adds the health check).
            self.last_timings = {"spawn_s": spawned - began,
                                 "ready_s": time.perf_counter() - spawned}
        except BaseException:
            for process in started:
                process.signal(signal.SIGKILL)
                process.stop(1.0)
            raise
        return started

    def _create(self, boot: dict, log, env: dict[str, str]):
        """The node's process (a ``subprocess.Popen``), its stderr on ``log``."""
        # A network mode may run the node inside something (netns:
        # ``ip netns exec <namespace>``); the agent never reads it.
        return spawner.popen(self.command_of(boot),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                             cwd=boot["cwd"], env=env, start_new_session=True)

    def _process(self, popen, log_path: Path) -> Process:
        """The Process that owns ``popen``."""
        return Process(popen, log_path)

    def _parent_pid(self, popen) -> int:
        """The pid of the node's parent process, which it asks to be ended with."""
        return os.getpid()

    def learn_from(self, entry) -> None:
        """Nothing to learn: spawned nodes preload nothing (see TemplateLauncher)."""

    def close(self) -> None:
        """Nothing to release: each node is its own process."""

    def _ended(self, process: Process, boot: dict) -> ClusterStartError:
        process.wait(2.0)
        return self._crashed(process, boot)

    def _crashed(self, process: Process, boot: dict) -> ClusterStartError:
        log = tail(process.log_path, 30)
        # Variables that change how the interpreter starts are the usual cause of a
        # node that dies before running any code; not every Python names them.
        starting = {**self.environment(), **boot.get("env", {})}
        shown = [f"{name} = {value!r}" for name, value in sorted(starting.items())
                 if name in _STARTUP_VARIABLES]
        return ClusterStartError(
            f"node {boot['name']} exited during start-up with status {process.popen.returncode}",
            "the node process failed before it was ready; its log ends with:\n" + log
            + ("\nthe node's interpreter started with " + ", ".join(shown) if shown else ""),
            ["read the traceback above: an import error in the project or a node_env "
             "value is the usual cause",
             "run: python -m disttest preflight"],
            kind="node-start-crash", log_tail=log)

    def _not_ready(self, process: Process, boot: dict, timeout: float) -> ClusterStartError:
        log = tail(process.log_path, 30)
        return ClusterStartError(
            f"node {boot['name']} did not report ready within {timeout:g}s",
            "the machine may be overloaded, or the node hangs while starting"
            + ("; its log ends with:\n" + log if log else " (its log is empty)"),
            ["raise startup_timeout in the configuration (e.g. startup_timeout = 60)",
             "start fewer nodes at once: lower the cluster sizes"],
            kind="node-start-timeout", log_tail=log)
