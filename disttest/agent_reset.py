"""Giving a node back clean (node side, stdlib only): imported after the ready line.

A reset runs the ``on_reset`` callbacks, waits for spawned work, clears the
node's state and directory and checks that its ports are free again. The
callbacks' runner also serves the end of a simulated node and of a node whose
controller is gone, so that services stop the same way on every path.
"""
from __future__ import annotations

import socket
import threading
import time

from disttest import this_node


def reset(agent, timeout: float) -> tuple[list, list]:
    """Give ``agent``'s node back clean: (the problems that stop that, ports still busy)."""
    context = agent.context
    busy: list = []
    problems = agent.run_reset_callbacks(timeout)
    deadline = time.monotonic() + timeout
    records = agent.spawns.take_all() if agent.spawns is not None else []
    for record in records:
        record["thread"].join(max(0.0, deadline - time.monotonic()))
        if record["thread"].is_alive():
            problems.append(f"spawned {record['fn']} still running {timeout:g}s after "
                            "reset (watch this_node.stopping or register on_reset)")
    context.state.clear()
    context.stopping = threading.Event()
    if context.dir:
        from disttest.agent_codec import empty_dir

        problems += empty_dir(context.dir)
    for name, port in context.ports.items():
        while not port_free(agent.host, port) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not port_free(agent.host, port):
            problems.append(f"port {name!r} ({agent.host}:{port}) is still in use after reset")
            busy.append(port)
    return problems, busy


def run_reset_callbacks(context, simulated: bool, timeout: float, describe, log) -> list[str]:
    """Run the node's on_reset callbacks, newest first, and say what failed.

    Each failure is also written to the node's log (``log``; ``describe`` is
    the agent's error description). The callbacks run in a thread of their
    own: one that hangs is reported after ``timeout`` seconds and left behind.
    """
    context.stopping.set()
    with context.lock:
        callbacks, context.reset_callbacks = context.reset_callbacks, []
    problems: list[str] = []

    def run_all() -> None:
        if simulated:
            this_node.install_context(context, thread_local=True)
        for callback in reversed(callbacks):
            name = getattr(callback, "__qualname__", callback)
            try:
                callback()
            except BaseException as exc:
                problems.append(f"on_reset callback {name!s} raised " + describe(exc)[2].rstrip())

    worker = threading.Thread(target=run_all, name="disttest-reset", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        problems.append(f"on_reset callbacks still running {timeout:g}s after they were "
                        "started (a callback blocks)")
    for problem in problems:
        log(problem)
    return list(problems)


def port_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` again."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()
