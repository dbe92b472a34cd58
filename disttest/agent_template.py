"""The node template: a preloaded process that forks nodes (stdlib only).

Started once per configuration by ``disttest.clusters.template``, with the
command line, interpreter, environment and working directory a spawned node
would get:

1. the agent reads the bootstrap from stdin; one with ``template`` set
   (``sys_path``, ``preload``, ``controller_pid``, ``control_fd``) makes the
   process this template;
2. ask the kernel to kill it with its controller, import the agent and the
   modules to preload -- nothing else runs: no thread, no user code beyond
   those imports;
3. refuse (one line on its control socket, then exit) when the imports
   failed or left a thread or an open descriptor behind: a fork would copy a
   lock held by a thread that does not exist in the child, or share a socket
   between nodes;
4. serve fork requests on its control socket (a ``SOCK_SEQPACKET`` socket
   whose descriptor the bootstrap names): each request carries the node's stdin, stdout and log
   descriptors and its environment; the child becomes the node
   (``agent.main``) as a spawned one would, and the template reports the
   child's pid, then its exit status once it ends. End of file on the
   socket (the controller stopped it or is gone) ends the template.
"""
from __future__ import annotations

import marshal
import os
import signal
import socket
import sys

_MAX_FDS = 3


def _send(sock: socket.socket, message: dict) -> None:
    sock.send(marshal.dumps(message))


def _open_descriptors(keep: set[int]) -> list[str]:
    """Open descriptors other than ``keep``, each with what it points to."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd in keep:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the descriptor of the listing itself, closed by now
        found.append(f"{fd} -> {target}")
    return found


def _preload(modules: list[str], control_fd: int) -> str | None:
    """Import the agent and ``modules``; why the template cannot fork safely, or None."""
    import importlib
    import threading

    from disttest import agent_codec  # what every node imports after its ready line

    agent_codec.load_pickle()
    import faulthandler  # noqa: F401

    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # an import error is a refusal, not a crash
            return f"cannot preload {name}: {type(exc).__name__}: {exc}"
    if threading.active_count() != 1:
        names = ", ".join(t.name for t in threading.enumerate()
                          if t is not threading.main_thread())
        return f"preloading started threads ({names})"
    extra = _open_descriptors({0, 1, 2, control_fd})
    if extra:
        return "preloading left descriptors open: " + ", ".join(extra)
    return None


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        _send(sock, {"exit": pid, "code": code})


def _become_node(sock: socket.socket, wake_r: int, wake_w: int, fds: list[int],
                 env: dict, run_node) -> None:
    """In the child: the node's descriptors and environment, then the agent."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.close()
    os.close(wake_r)
    os.close(wake_w)
    os.setsid()  # as a spawned node: its own session
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    try:
        run_node()
    finally:
        os._exit(1)


def serve(sock: socket.socket, run_node) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    import select

    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 512)
            _reap(sock)
        if sock not in ready:
            continue
        try:
            data, ancillary, _, _ = sock.recvmsg(
                1 << 20, socket.CMSG_LEN(_MAX_FDS * 4))
        except InterruptedError:
            continue
        if not data:
            return  # the controller is done with us, or gone
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(memoryview(payload).cast("i")[:len(payload) // 4])
        request = marshal.loads(data)
        pid = os.fork()
        if pid == 0:
            _become_node(sock, wake_r, wake_w, fds, request["env"], run_node)
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": pid})


def main(boot: dict, run_node) -> None:
    """Run as the template: ``boot`` is the bootstrap the agent read (``template`` set);
    each forked child calls ``run_node`` (the agent's ``main``), which reads its own."""
    sock = socket.socket(fileno=boot["control_fd"])
    from disttest import containment

    problem = containment.die_with(boot["controller_pid"])
    sys.path[:] = boot["sys_path"] + [p for p in sys.path if p not in boot["sys_path"]]
    # stdin is no longer needed: the node's own stdin replaces it in each child.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    problem = problem or _preload(list(boot.get("preload", ())), boot["control_fd"])
    _send(sock, {"refused": problem} if problem else {"ready": os.getpid()})
    if problem:
        sys.exit(0)
    # What is loaded now stays out of the collector's passes, in the template and
    # in every node: a node's first collection would otherwise touch (and so copy)
    # every page of it.
    import gc

    gc.collect()
    gc.freeze()
    serve(sock, run_node)

