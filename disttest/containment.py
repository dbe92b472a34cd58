"""A node contains the processes its code starts (node side: stdlib only).

Things that escaped before: a process started by node code outlived the node
when the test killed or restarted it, or when the runner was SIGKILLed; a
double-forked one (re-parented to init at once) survived every path; and a
node stuck in C code holding the GIL outlived its runner, since noticing the
end of its stdin needs the GIL.

Solution, on Linux (through ctypes, so node code stays stdlib-only):

* the node is the *child subreaper* of everything below it
  (``PR_SET_CHILD_SUBREAPER``): an orphaned descendant, double-forked or not,
  is re-parented to the node instead of init, so the node's process tree is
  everything its code started. The node ends that tree on every exit it
  makes itself (``end_descendants``), and the controller, which snapshots
  the tree before it kills, stops or restarts a node, kills what is left;
* the node asks the kernel for a signal when its controller ends
  (``PR_SET_PDEATHSIG``). The kernel sends it when the controller *thread*
  that spawned the node ends, so the controller spawns every node from one
  thread that lives as long as it does (clusters/launcher.py). The signal's
  handler is not Python code -- that could not run while C code holds the
  GIL -- but libc's ``alarm``: the kernel then sends SIGALRM (whose default
  action ends the process) ``DEATH_GRACE_S`` seconds later. Meanwhile a
  healthy node has seen its stdin close, stopped its services and ended its
  descendants itself; a stuck one is ended by the kernel.

A node forked from the template (disttest/agent_template.py) also has the
template above it, itself a subreaper (``keep_descendants``): what a node
leaves when it ends by itself -- a crash, ``os._exit`` -- is re-parented to
the template, which kills it; and when the controller ends, the template
gives its nodes the grace period, then kills the stuck ones and what they
left. A spawned node has no such keeper: what it leaves when it crashes is
re-parented to init.

Elsewhere nothing changes: a node ends when its stdin closes, and what its
code started may outlive it (the controller's leak check still reports and
kills the children it can see).
"""
from __future__ import annotations

import os
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# SIGSTKFLT: nothing else on Linux sends it. Its number doubles as the grace
# period, because its handler is alarm(signum).
DEATH_SIGNAL = 16
DEATH_GRACE_S = DEATH_SIGNAL

_libc = None


def _c():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def supported() -> bool:
    return sys.platform.startswith("linux")


def contain(controller_pid: int | None) -> str | None:
    """Become the subreaper of our descendants and ask to be ended with the
    controller ``controller_pid`` (our parent). A note when it could not be done."""
    if not supported():
        return None
    try:
        import ctypes

        libc = _c()
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return f"cannot become a child subreaper: {os.strerror(ctypes.get_errno())}"
        if controller_pid is None:
            return None
        # alarm() as the handler, called by the kernel with the signal number.
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.signal(DEATH_SIGNAL, ctypes.cast(libc.alarm, ctypes.c_void_p))
        if libc.prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL, 0, 0, 0) != 0:
            return f"cannot ask for a parent-death signal: {os.strerror(ctypes.get_errno())}"
    except (OSError, AttributeError) as exc:  # no libc to load, no prctl
        return f"process containment unavailable: {exc}"
    if os.getppid() != controller_pid:
        # The controller ended before we asked: the kernel will not tell us.
        os.kill(os.getpid(), DEATH_SIGNAL)
    return None


def keep_descendants(controller_pid: int, signum: int) -> str | None:
    """The node template: the subreaper of every node it forks and of what they
    start, sent ``signum`` when its controller ends (it handles that signal itself:
    it runs no code that could hold the GIL). A note when it could not be done."""
    if not supported():
        return None
    try:
        import ctypes

        libc = _c()
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return f"cannot become a child subreaper: {os.strerror(ctypes.get_errno())}"
        if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            return f"cannot ask for a parent-death signal: {os.strerror(ctypes.get_errno())}"
    except (OSError, AttributeError) as exc:
        return f"process containment unavailable: {exc}"
    if os.getppid() != controller_pid:
        os.kill(os.getpid(), signum)
    return None


def outlive_controller() -> None:
    """A kept node: no longer ended with the controller that started it."""
    if supported() and _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)


def children() -> list[int]:
    """This single-threaded process's live and unreaped children."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children", "rb") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: read every parent link
        return [pid for pid, parent in _parents().items() if parent == me]


def _parents() -> dict[int, int]:
    """Every live (not zombie) process's parent, from /proc."""
    parents: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return parents
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and fields[0] != b"Z":
            parents[int(name)] = int(fields[1])
    return parents


def descendants(pid: int | None = None) -> list[int]:
    """Every live descendant of ``pid`` (default: this process), from /proc."""
    root = os.getpid() if pid is None else pid
    below: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        below.setdefault(parent, []).append(child)
    found, todo = [], [root]
    while todo:
        for child in below.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def end_descendants(grace: float = 0.0) -> list[int]:
    """End every descendant of this node: SIGTERM, up to ``grace`` seconds, SIGKILL.

    They are found through parent links, so this is complete while the node
    is their subreaper; a process that escaped before that cannot be found.
    """
    pids = descendants()
    if not pids:
        return []
    if grace > 0:
        send(pids, 15)  # SIGTERM (the signal module costs an enum import)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and descendants():
            time.sleep(0.02)
        pids = descendants()
    # Several rounds: a process may fork while we kill its parent.
    for _ in range(5):
        if not pids:
            break
        send(pids, 9)  # SIGKILL
        pids = descendants()
    return pids


def send(pids, signum) -> None:
    """Signal each of ``pids``, ignoring those already gone."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            pass
