"""Node-side functions of tests/test_containment.py (stdlib only: nodes import it)."""
from __future__ import annotations

import os
import subprocess
import sys


def start_escapees() -> list[int]:
    """A plain child and a double-forked daemon (new session, parent exits at once):
    their pids, once the daemon has been re-parented."""
    child = subprocess.Popen(["sleep", "300"]).pid
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        daemon = os.fork()
        if daemon == 0:
            os.close(read_end)
            os.write(write_end, str(os.getpid()).encode())
            os.close(write_end)
            os.execvp("sleep", ["sleep", "300"])
        os._exit(0)
    os.close(write_end)
    daemon = int(os.read(read_end, 32))
    os.close(read_end)
    os.waitpid(middle, 0)
    return [child, daemon]


def start_chain(depth: int) -> list[int]:
    """``depth`` processes, each the child of the one before: their pids."""
    script = ("import os, subprocess, sys\n"
              "n = int(sys.argv[1])\n"
              "child = subprocess.Popen([sys.executable, '-c', sys.argv[2], str(n - 1), sys.argv[2]],"
              " stdout=subprocess.PIPE) if n > 1 else None\n"
              "below = child.stdout.readline().decode() if child else ''\n"
              "print(os.getpid(), below.strip(), flush=True)\n"
              "import time; time.sleep(300)\n")
    top = subprocess.Popen([sys.executable, "-c", script, str(depth), script],
                           stdout=subprocess.PIPE)
    return [int(pid) for pid in top.stdout.readline().split()]


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rfind(b")") + 2:].split()[1])


def hold_the_gil() -> None:
    """Sit in C code without releasing the GIL: a PyDLL call keeps it, and a
    read() from a pipe nobody writes to is restarted after a signal handler."""
    import ctypes

    read_end, _write_end = os.pipe()
    buffer = ctypes.create_string_buffer(1)
    sys.stderr.write("holding the GIL\n")
    sys.stderr.flush()
    ctypes.PyDLL(None).read(read_end, buffer, 1)


def limit_descriptors(spare: int) -> int:
    """Lower this process's descriptor limit to what it has open plus ``spare``."""
    import resource

    used = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + spare, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))
    return used + spare


def wait_for_file(path: str, value):
    """Return ``value`` once ``path`` exists (a call that stays in flight meanwhile)."""
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def crash_in_c() -> None:
    """A segmentation fault in C code, as a buggy extension would cause."""
    import ctypes

    ctypes.string_at(0)


def ignore_sigalrm() -> None:
    """Ignore SIGALRM process-wide, as node code with timers of its own may."""
    import ctypes

    ctypes.CDLL(None).signal(14, ctypes.c_void_p(1))  # SIG_IGN


def ignore_sigterm() -> None:
    """Ignore SIGTERM process-wide (signal.signal works on the main thread only)."""
    import ctypes

    ctypes.CDLL(None).signal(15, ctypes.c_void_p(1))  # SIG_IGN
