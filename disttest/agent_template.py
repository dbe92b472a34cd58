"""The node template: a preloaded process that forks nodes (stdlib only).

Started once per configuration by ``disttest.clusters.template``, with the
command line, interpreter, environment and working directory a spawned node
would get:

1. the agent reads the bootstrap from stdin; one with ``template`` set
   (``sys_path``, ``preload``, ``optional``, ``controller_pid``, ``control_fd``) makes the
   process this template;
2. become the subreaper of the nodes and of what they start, ask the kernel
   for ``DEATH_SIGNAL`` when its controller ends, import the agent and the
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
   child's pid, then its exit status once it ends. What an ended node left
   behind is killed (``_Keeper``). A ``keep`` request names a node the
   controller keeps: it is left running. End of file on the socket or the
   death signal (the controller stopped it or is gone) ends the template,
   after its nodes had their grace period (``_Keeper.wind_down``).
"""
from __future__ import annotations

import marshal
import os
import signal
import socket
import sys

_MAX_FDS = 3
# The template's parent-death signal: handled in Python (it never runs code that
# could hold the GIL), so it can end its nodes and what they left first.
DEATH_SIGNAL = int(signal.SIGTERM)


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


def _preload(modules: list[str], optional: set[str], control_fd: int,
             skipped: dict[str, str]) -> tuple[str, str] | None:
    """Import the agent and ``modules``: None, or why the template cannot fork
    safely and which module it was ("" for the agent's own imports). An
    ``optional`` module (learned by ``preload = "auto"``) that fails to import
    is left out, with the reason in ``skipped``, instead of refusing."""
    import importlib
    import threading

    from disttest import agent_codec  # what every node imports after its ready line

    agent_codec.load_pickle()
    import faulthandler  # noqa: F401

    keep = {0, 1, 2, control_fd}
    culprit = ""
    for name in [""] + modules:  # checked after each import: the culprit is named
        if name:
            culprit = name
            try:
                importlib.import_module(name)
            except BaseException as exc:  # an import error is a refusal, not a crash
                reason = f"cannot preload {name}: {type(exc).__name__}: {exc}"
                if name not in optional:
                    return reason, name
                skipped[name] = reason
        if threading.active_count() != 1:
            names = ", ".join(t.name for t in threading.enumerate()
                              if t is not threading.main_thread())
            return f"preloading {culprit or 'the agent'} started threads ({names})", culprit
        extra = _open_descriptors(keep)
        if extra:
            return (f"preloading {culprit or 'the agent'} left descriptors open: "
                    + ", ".join(extra), culprit)
    return None


class _Keeper:
    """The template's children: the nodes it forked, and strays to end.

    The template is the subreaper of its nodes and of everything they start
    (disttest/containment.py). While a node lives, what its code starts stays
    below it; when a node ends by itself (a crash, ``os._exit``) or is
    killed, what it left is re-parented here, and every child of the template
    that is not a node is such a stray: it is killed, and the node's log says
    so. A node the controller keeps (``keep``) is no longer the template's
    concern.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.nodes: dict[int, int] = {}  # pid -> the node's log (a copy of its stderr)
        self.kept: set[int] = set()

    def tell(self, message: dict) -> None:
        try:
            _send(self.sock, message)
        except OSError:  # the controller closed the socket or is gone
            pass

    def reap(self) -> None:
        ended = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.nodes:
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                ended.append((pid, code, self.nodes.pop(pid)))
            self.kept.discard(pid)
        strays = self.end_strays()
        for pid, code, log in ended:
            if strays:
                _write(log, f"[disttest.template] ended {len(strays)} process(es) this node "
                            f"left behind: {' '.join(map(str, sorted(strays)))}\n")
            os.close(log)
            # With the node's exit, what it left: the controller reports those it
            # did not end itself as leaks.
            self.tell({"exit": pid, "code": code, "strays": strays})

    def end_strays(self) -> list[int]:
        """Kill every child that is not a node: what ended nodes left behind.

        Their own children are re-parented here in turn when they die, and
        killed on the next round (each death is a SIGCHLD)."""
        from disttest import containment

        strays = [pid for pid in containment.children()
                  if pid not in self.nodes and pid not in self.kept]
        containment.send(strays, 9)
        return strays

    def keep(self, pid: int) -> None:
        log = self.nodes.pop(pid, None)
        if log is not None:
            os.close(log)
            self.kept.add(pid)

    def wind_down(self, wake_r: int, grace: float) -> None:
        """The controller is done or gone: nodes it did not keep have ``grace``
        seconds to end (they see their stdin close), then they and every stray
        are killed. Kept nodes are left running."""
        import select
        import time

        deadline = time.monotonic() + grace
        while self.nodes and time.monotonic() < deadline:
            if select.select([wake_r], [], [], max(0.0, deadline - time.monotonic()))[0]:
                os.read(wake_r, 512)
                self.reap()
        from disttest import containment

        for _ in range(50):  # kill, wait for the deaths, until nothing of ours is left
            containment.send(list(self.nodes), 9)
            if not self.end_strays() and not self.nodes:
                return
            if select.select([wake_r], [], [], 0.1)[0]:
                os.read(wake_r, 512)
            self.reap()


def _write(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
    except OSError:
        pass


def _become_node(sock: socket.socket, wake_r: int, wake_w: int, fds: list[int],
                 request: dict, run_node, logs, failed: int) -> None:
    """In the child: the node's descriptors and environment, then the agent --
    or, for a request with ``argv``, that program (a spawned node, which still
    has the template above it). ``logs``: the other nodes' logs, which the
    template holds; ``failed``: where a failed exec writes its error."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sock.close()
    for fd in (wake_r, wake_w, *logs):
        os.close(fd)
    os.setsid()  # as a spawned node: its own session
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    env = request["env"]
    try:
        if "argv" in request:
            try:
                os.chdir(request["cwd"])
                os.execvpe(request["argv"][0], request["argv"], env)
            except OSError as exc:
                os.write(failed, marshal.dumps({"error": exc.errno,
                                                "filename": exc.filename or ""}))
            return
        os.close(failed)
        os.environ.clear()
        os.environ.update(env)
        run_node()
    finally:
        os._exit(1)


def serve(sock: socket.socket, run_node, controller_pid: int) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    gone = []  # the controller ended: our parent-death signal (see containment)
    signal.signal(DEATH_SIGNAL, lambda signum, frame: gone.append(signum))
    import select

    keeper = _Keeper(sock)
    while not gone:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 512)
            keeper.reap()
        if sock not in ready or gone:
            continue
        try:
            data, ancillary, _, _ = sock.recvmsg(
                1 << 20, socket.CMSG_LEN(_MAX_FDS * 4))
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            break  # the controller is done with us, or gone
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(memoryview(payload).cast("i")[:len(payload) // 4])
        request = marshal.loads(data)
        if "keep" in request:
            keeper.keep(request["keep"])
            continue
        failed_r, failed_w = os.pipe()  # both close on exec
        pid = os.fork()
        if pid == 0:
            os.close(failed_r)
            _become_node(sock, wake_r, wake_w, fds, request, run_node,
                         keeper.nodes.values(), failed_w)
        os.close(failed_w)
        with os.fdopen(failed_r, "rb") as failure:
            error = failure.read()  # end of file once the child runs (or execs)
        if error:
            os.waitpid(pid, 0)
            keeper.tell(marshal.loads(error))
        else:
            keeper.nodes[pid] = os.dup(fds[2])  # the node's log
            keeper.tell({"pid": pid})
        for fd in fds:
            os.close(fd)
    # A controller that closed the socket has stopped its nodes already; one
    # that died gives them the grace a spawned node gets (containment).
    from disttest import containment

    died = gone or os.getppid() != controller_pid
    keeper.wind_down(wake_r, containment.DEATH_GRACE_S if died else 1.0)


def main(boot: dict, run_node) -> None:
    """Run as the template: ``boot`` is the bootstrap the agent read (``template`` set);
    each forked child calls ``run_node`` (the agent's ``main``), which reads its own."""
    sock = socket.socket(fileno=boot["control_fd"])
    from disttest import containment

    problem = containment.keep_descendants(boot["controller_pid"], DEATH_SIGNAL)
    sys.path[:] = boot["sys_path"] + [p for p in sys.path if p not in boot["sys_path"]]
    # stdin is no longer needed: the node's own stdin replaces it in each child.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    skipped: dict[str, str] = {}
    refusal = (problem, "") if problem else _preload(
        list(boot.get("preload", ())), set(boot.get("optional", ())), boot["control_fd"], skipped)
    _send(sock, {"refused": refusal[0], "module": refusal[1]} if refusal
          else {"ready": os.getpid(), "skipped": skipped})
    if refusal:
        sys.exit(0)
    # What is loaded now stays out of the collector's passes, in the template and
    # in every node: a node's first collection would otherwise touch (and so copy)
    # every page of it.
    import gc

    gc.collect()
    gc.freeze()
    serve(sock, run_node, boot["controller_pid"])

