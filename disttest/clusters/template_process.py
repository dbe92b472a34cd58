"""A node template process, seen from the controller.

``Template`` starts one (``disttest/agent_template.py`` on the other side)
and speaks to it over its control socket: fork a node, run a spawned node's
command, keep a node, learn each node's exit status and what it left behind.
``ForkedPopen`` is the ``subprocess.Popen`` face of a node a template made.
Which nodes a template makes, and which template, is ``TemplateLauncher``'s
business (disttest/clusters/template.py).
"""
from __future__ import annotations

import marshal
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

from disttest.clusters import spawner
from disttest.clusters.launcher import AGENT_CODE, Process, write_bootstrap

#: In the template's environment only (see the module docstring).
TEMPLATE_MARK = "DISTTEST_NODE_TEMPLATE"


class TemplateRefused(Exception):
    """The template cannot fork nodes safely; the reason is the message, ``module``
    the preloaded module that made it so ("" when none did)."""

    def __init__(self, reason: str, module: str = "") -> None:
        super().__init__(reason)
        self.module = module


class Template:
    """One template process and its control socket (controller side)."""

    def __init__(self, executable: str, cwd: str, sys_path: list, env: dict,
                 preload: tuple, timeout: float, optional: frozenset = frozenset()) -> None:
        self.lock = threading.Lock()
        self.exits: dict[int, int] = {}
        self.strays: dict[int, list[int]] = {}  # what each ended node left, killed by the template
        self.gone = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        control_fd = theirs.fileno()
        self.errors = tempfile.TemporaryFile()  # the template's own stderr
        try:
            self.popen = spawner.popen(
                [executable, "-c", AGENT_CODE], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=self.errors, cwd=cwd,
                env={**env, TEMPLATE_MARK: "1"},
                pass_fds=[theirs.fileno()], start_new_session=True)
        finally:
            theirs.close()
        # optional: modules (learned ones) left out, not refused, when they fail to import
        self.skipped: dict[str, str] = {}
        write_bootstrap(self.popen.stdin, {"template": True, "sys_path": sys_path,
                                           "preload": list(preload), "optional": list(optional),
                                           "controller_pid": os.getpid(),
                                           "control_fd": control_fd})
        self.popen.stdin.close()
        reply = self._receive(timeout)
        if reply is None or "ready" not in reply:
            reason = reply["refused"] if reply else self._crash()
            self.close()
            raise TemplateRefused(reason, reply.get("module", "") if reply else "")
        self.skipped = dict(reply.get("skipped", {}))

    def _crash(self) -> str:
        self.errors.seek(0)
        text = self.errors.read().decode("utf-8", "replace").strip().splitlines()
        return "the template ended during start-up" + (f": {text[-1]}" if text else "")

    def _receive(self, timeout: float | None) -> dict | None:
        """The next message, storing exit reports; None at end of file or timeout."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        try:
            data = self.sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.gone = True
            return None
        message = marshal.loads(data)
        if "exit" in message:
            self.exits[message["exit"]] = message["code"]
            self.strays[message["exit"]] = message["strays"]
        return message

    def fork(self, fds: list[int], env: dict, timeout: float,
             argv: list[str] | None = None, cwd: str | None = None) -> int:
        """A new node process on ``fds`` (stdin, stdout, stderr); its pid.

        Forked from the template, or with ``argv``, running that program in
        ``cwd`` (a spawned node whose parent is the template). An OSError
        names what could not be run, as ``subprocess.Popen``'s would."""
        request = {"env": env} if argv is None else {"env": env, "argv": argv, "cwd": cwd}
        with self.lock:
            if self.gone:
                raise OSError("the node template has ended")
            self.sock.sendmsg([marshal.dumps(request)],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                memoryview(bytes().join(fd.to_bytes(4, sys.byteorder,
                                                                     signed=True)
                                                        for fd in fds)))])
            deadline = time.monotonic() + timeout
            while True:
                message = self._receive(max(0.0, deadline - time.monotonic()))
                if message is None:
                    raise OSError("the node template did not fork the node")
                if "pid" in message:
                    return message["pid"]
                if "error" in message:
                    code = message["error"]
                    raise OSError(code, os.strerror(code), message["filename"] or None)

    def keep(self, pid: int) -> None:
        """``pid`` is kept (it outlives the controller): the template leaves it running."""
        with self.lock:
            if not self.gone:
                try:
                    self.sock.send(marshal.dumps({"keep": pid}))
                except OSError:
                    pass

    def status(self, pid: int, wait: float = 0.0) -> int | None:
        """``pid``'s exit code once the template has reported it."""
        deadline = time.monotonic() + wait
        while True:
            with self.lock:
                while pid not in self.exits and not self.gone:
                    if self._receive(0) is None:
                        break
                if pid in self.exits:
                    return self.exits[pid]
                if self.gone:  # orphaned: no status to learn, only whether it runs
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        return self.exits.setdefault(pid, -9)
                    except OSError:
                        pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self.gone:
                time.sleep(min(remaining, 0.02))
            else:
                select.select([self.sock], [], [], min(remaining, 0.05))

    def close(self) -> None:
        """End the template (end of file on its socket); its nodes are stopped already."""
        self.sock.close()
        self.gone = True
        try:
            self.popen.wait(5.0)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.errors.close()


class ForkedPopen:
    """The part of ``subprocess.Popen`` a node's Process uses, for a node its
    template made (forked, or running the node's command)."""

    def __init__(self, template: Template, pid: int, stdin, stdout) -> None:
        self.template = template
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.template.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.template.status(
                self.pid, float("inf") if timeout is None else timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"node {self.pid}", timeout)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass


class TemplateMadeProcess(Process):
    """A node its template made: the template is its keeper (it kills what the
    node leaves when it ends) and must be told when the node is kept."""

    popen: ForkedPopen

    @property
    def has_keeper(self) -> bool:
        return not self.popen.template.gone

    def outlive_controller(self) -> None:
        """The node is kept: its template must not end it with the controller."""
        self.popen.template.keep(self.pid)

    def left_behind(self) -> list[int]:
        """Processes the ended node left, which its template killed."""
        return list(self.popen.template.strays.get(self.pid, ()))
