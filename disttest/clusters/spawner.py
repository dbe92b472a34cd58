"""Every local node process is created from one long-lived thread.

On Linux a node asks the kernel to signal it when its parent ends (see
disttest/containment.py), and "parent" there means the *thread* that created
it: a node started from a short-lived thread -- a worker of a parallel
start, a test's own thread restarting a node -- would be told its
controller died as soon as that thread ended. So ``popen`` creates the
process on the main thread directly (it lives as long as the process), and
from any other thread hands the creation to the ``disttest-spawner`` thread,
which is started then and lives as long as the controller process.
"""
from __future__ import annotations

import queue
import subprocess
import threading

_requests: queue.SimpleQueue = queue.SimpleQueue()
_thread: threading.Thread | None = None
_lock = threading.Lock()


def _serve() -> None:
    while True:
        args, kwargs, box, done = _requests.get()
        try:
            box["popen"] = subprocess.Popen(*args, **kwargs)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        done.set()


def popen(*args, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(*args, **kwargs)``, created on a thread that lives as
    long as this process: the main thread, or the spawner thread."""
    global _thread
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(*args, **kwargs)
    with _lock:
        if _thread is None or not _thread.is_alive():  # first use, or a forked child
            _thread = threading.Thread(target=_serve, name="disttest-spawner", daemon=True)
            _thread.start()
    box: dict = {}
    done = threading.Event()
    _requests.put((args, kwargs, box, done))
    try:
        done.wait()
    except BaseException:  # interrupted: the process is created anyway; end it
        done.wait()
        if "popen" in box:
            box["popen"].kill()
            box["popen"].wait()
        raise
    if "error" in box:
        raise box["error"]
    return box["popen"]
