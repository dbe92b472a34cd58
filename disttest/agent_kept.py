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


def _alive(pid) -> bool:
    """A live process (not a zombie) with this pid."""
    if not isinstance(pid, int) or pid <= 1:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


class KeptLife:
    """What a detached node owns once its controller is gone."""

    def __init__(self, agent, log, exit_now) -> None:
        self.agent = agent        # its busy count and idle clock
        self.log, self.exit_now = log, exit_now
        self.ttl = 0.0
        self.call_timeout: float | None = None  # the controller gave up on a call by then
        self.registry_fd: int | None = None
        self.lock_paths: list = []
        self.record_path: str | None = None
        self.log_path: str | None = None  # removed when the node ends itself
        self.held_locks: dict = {}  # path -> descriptor holding its lock

    def start(self, ttl: float, lock_paths, record_path: str, log_path: str,
              call_timeout: float | None) -> None:
        self.ttl = ttl
        self.call_timeout = call_timeout
        # Held open so that `cluster status` and `cluster clean` can tell which
        # registry this node belongs to (/proc/<pid>/fd), and find it when its
        # record is gone.
        try:
            self.registry_fd = os.open(os.path.dirname(record_path),
                                       os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            pass
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

    def working(self) -> bool:
        """Whether a request is being served that the controller still waits for:
        one running longer than call_timeout is stuck, and counts as idle."""
        now = time.monotonic()
        limit = self.call_timeout
        return any(limit is None or now - began < limit
                   for began in list(self.agent.calls.values()))

    def idle_watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.ttl / 4))
            agent = self.agent
            if not self.working() and time.monotonic() - agent.last_used > self.ttl:
                self.log(f"idle for {self.ttl:g}s: ending (keep_clusters_ttl)")
                self.forget()
                self.remove_log()
                self.forget_record()  # holds the registry's lock until we are gone
                self.exit_now(0)

    def remove_log(self) -> None:
        # Nobody is left to stop this cluster and remove its temporary directory:
        # each node removes its own log, and the last one the emptied directory.
        if not self.log_path:
            return
        directory = os.path.dirname(self.log_path)
        node_dir = self.agent.context.dir
        if node_dir:  # the node's own working directory goes first
            import shutil

            shutil.rmtree(node_dir, ignore_errors=True)
        try:
            os.unlink(self.log_path)
            left = os.listdir(directory)
            if any(not name.startswith(".") for name in left):
                return  # a peer's log or directory is still there: that peer removes it
            for name in left:  # bookkeeping only, such as the run's .owner mark
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)
        except OSError:  # a peer removed it first
            pass

    def forget_record(self) -> None:
        """Remove the cluster's record, unless another of its nodes still lives:
        the record is how `cluster status`, `stop` and `clean` find them."""
        path = self.record_path
        if not path:
            return
        import fcntl
        import json

        try:
            lock = os.open(os.path.join(os.path.dirname(path), ".lock"),
                           os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the registry's lock (clusters/registry.py)
            try:
                with open(path, "rb") as f:
                    others = [n.get("pid") for n in json.loads(f.read()).get("nodes", [])
                              if n.get("pid") != os.getpid()]
            except (OSError, ValueError, AttributeError):
                others = []
            # A sibling that ended just before us may still look alive for a
            # moment (its files closed, its exit not yet complete): give it one.
            deadline = time.monotonic() + 1.0
            while any(_alive(pid) for pid in others) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not any(_alive(pid) for pid in others):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        except BaseException:
            os.close(lock)
            raise
        # The lock stays held until this process has ended (the kernel drops it
        # then): a sibling ending at the same moment waits, and then sees us gone.

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
