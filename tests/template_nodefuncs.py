"""Node-side functions of tests/test_template_nodes.py (stdlib only: nodes import it)."""
from __future__ import annotations

import os
import signal
import sys


def _target(fd: int) -> str:
    target = os.readlink(f"/proc/self/fd/{fd}")
    # a pipe or a socket, or the node's log file (in its cluster's directory)
    return target.split(":")[0] if target.startswith(("pipe:", "socket:")) else \
        os.path.basename(target)


def describe(ports=("app",)) -> dict:
    """Everything a test could observe of how its node was made."""
    import faulthandler
    import random

    from disttest import this_node

    return {
        "this_node": {**{field: getattr(this_node, field)
                         for field in ("name", "index", "host", "cluster_id", "state")},
                      "stopping": this_node.stopping.is_set(),
                      "ports": {name: this_node.port(name) for name in ports},
                      "address": this_node.address("app")[0],
                      "peers": {name: this_node.peers(name) for name in ports}},
        "inside_node": this_node.inside_node(),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "sys.path": list(sys.path),
        "sys.argv": list(sys.argv),
        "sys.flags": tuple(sys.flags),
        "executable": sys.executable,
        "descriptors": [_target(fd) for fd in (0, 1, 2)],
        "own session": os.getsid(0) == os.getpid(),
        "own process group": os.getpgid(0) == os.getpid(),
        "handlers": [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM,
                                                       signal.SIGCHLD, signal.SIGPIPE)],
        "faulthandler": faulthandler.is_enabled(),
        "stdout": (sys.stdout.encoding, sys.stdout.line_buffering),
        "umask": os.umask(os.umask(0o22)),
        "random": random.random(),
    }


def parent() -> int:
    return os.getppid()


def loaded(name: str) -> bool:
    """Has this node imported ``name`` (or was it forked from a process that had)?"""
    return name in sys.modules


def interpreter_flag(name: str) -> int:
    """One of ``sys.flags``: set at interpreter start (PYTHON* variables)."""
    import sys

    return getattr(sys.flags, name)
