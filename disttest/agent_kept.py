"""A kept node's own life (node side, stdlib only): imported on ``detach``.

A node told to ``detach`` outlives the controller that started it: it takes
over the locks of its own ports, restarts its idle clock on every request,
and after ``ttl`` idle seconds removes its locks, its kept-cluster record and
its log, and ends. Only kept nodes import this module, so a plain node start
never pays for it.
"""
from __future__ import annotations

import os
import threading
import time


class KeptLife:
    """What a detached node owns once its controller is gone."""

    def __init__(self, agent, log, exit_now) -> None:
        self.agent = agent        # its busy count and idle clock
        self.log, self.exit_now = log, exit_now
        self.ttl = 0.0
        self.lock_paths: list = []
        self.record_path: str | None = None
        self.log_path: str | None = None  # removed when the node ends itself
        self.held_locks: dict = {}  # path -> descriptor holding its lock

    def start(self, ttl: float, lock_paths, record_path: str, log_path: str) -> None:
        self.ttl = ttl
        self.lock_paths = list(lock_paths)
        self.record_path = record_path
        self.log_path = log_path
        threading.Thread(target=self.take_locks, name="disttest-locks", daemon=True).start()
        threading.Thread(target=self.idle_watch, name="disttest-ttl", daemon=True).start()

    def take_locks(self) -> None:
        # The controller holds these until it exits; wait for each, then hold it
        # for as long as this node lives (the kernel drops it when we end). The
        # lock directory is shared with other users: lockfiles opens no link.
        from disttest.clusters import lockfiles

        for path in self.lock_paths:
            fd = lockfiles.lock(path, wait=True, attempts=100)
            if fd is None:
                self.log(f"port lock {path} is not a plain lock file: not taken over")
            else:
                self.held_locks[path] = fd

    def idle_watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.ttl / 4))
            agent = self.agent
            if agent.busy == 0 and time.monotonic() - agent.last_used > self.ttl:
                self.log(f"idle for {self.ttl:g}s: ending (keep_clusters_ttl)")
                self.forget(self.record_path)
                self.remove_log()
                self.exit_now(0)

    def remove_log(self) -> None:
        # Nobody is left to stop this cluster and remove its temporary directory:
        # each node removes its own log, and the last one the emptied directory.
        if not self.log_path:
            return
        directory = os.path.dirname(self.log_path)
        try:
            os.unlink(self.log_path)
            left = os.listdir(directory)
            if any(not name.startswith(".") for name in left):
                return  # a peer's log is still there: that peer removes the directory
            for name in left:  # bookkeeping only, such as the run's .owner mark
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)
        except OSError:  # a peer removed it first
            pass

    def forget(self, *extra) -> None:
        """Remove the port locks (we hold them, so that is safe) and ``extra`` files."""
        from disttest.clusters import lockfiles

        for path in self.lock_paths:
            if path in self.held_locks:
                lockfiles.unlock(path, self.held_locks.pop(path))
        for path in extra:  # the record, in the owner's private state directory
            try:
                if path:
                    os.unlink(path)
            except OSError:
                pass
