"""Every local node process is created on a thread that outlives it.

On Linux a node asks the kernel to signal it when its parent ends (see
disttest/containment.py), and "parent" there means the *thread* that created
it: a node started from a short-lived thread -- a worker of a parallel
start, a test's own thread restarting a node -- would be told its
controller died as soon as that thread ended. So ``popen`` creates the
process on the main thread directly (it lives as long as the process), and
from any other thread hands the creation to the ``disttest-spawner`` thread.
That thread lives while any process it created does, and ends when none is
left (a later request starts a new one).
"""
from __future__ import annotations

import queue
import subprocess
import threading

_requests: queue.SimpleQueue = queue.SimpleQueue()
_thread: threading.Thread | None = None
_lock = threading.Lock()
_IDLE_CHECK_S = 0.5


def _serve() -> None:
    global _thread
    created: list[subprocess.Popen] = []
    while True:
        try:
            args, kwargs, box, done = _requests.get(timeout=_IDLE_CHECK_S)
        except queue.Empty:
            created = [p for p in created if p.poll() is None]
            with _lock:
                if not created and _requests.empty():
                    _thread = None
                    return
            continue
        try:
            box["popen"] = subprocess.Popen(*args, **kwargs)
            created.append(box["popen"])
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        done.set()


def popen(*args, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(*args, **kwargs)``, created on a thread that outlives
    the process: the main thread, or the spawner thread."""
    global _thread
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(*args, **kwargs)
    box: dict = {}
    done = threading.Event()
    with _lock:
        _requests.put((args, kwargs, box, done))
        if _thread is None or not _thread.is_alive():  # none yet, or a forked child
            _thread = threading.Thread(target=_serve, name="disttest-spawner", daemon=True)
            _thread.start()
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
