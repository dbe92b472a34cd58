"""PortAllocator: node ports from the configured range, never shared by two runs.

A port is handed out only when (1) it is not one of the well-known
development ports, (2) this process can take an exclusive ``flock`` on its
lock file, and (3) nothing listens on it right now. The lock is held for the
life of the cluster; the kernel drops it if the process dies, so a crashed
run never leaves a port locked. Lock files are removed on release; a locker
re-checks after locking that its file is still the one at the path, which
makes removal safe against a concurrent locker. The lock directory is shared
with other users: see clusters/lockfiles.py for how its files are opened.
"""
from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

from disttest.clusters import lockfiles
from disttest.errors import DisttestError, PortRangeExhausted

# Ports that development tools commonly use: never hand them to a node.
WELL_KNOWN_DEV_PORTS = frozenset({
    1433, 1521, 2181, 2375, 2376, 3000, 3001, 3306, 4000, 4200, 4369, 5000, 5001,
    5173, 5432, 5672, 5984, 6006, 6379, 6443, 7000, 7474, 8000, 8008, 8080, 8081,
    8086, 8443, 8500, 8888, 9000, 9042, 9090, 9092, 9200, 9300, 9418, 11211,
    15672, 25565, 27017, 27018, 28017,
})


def lock_dir_and_note() -> tuple[Path, str | None]:
    """The lock directory (one per machine, shared by every run, sticky like /tmp)
    and a note when it was not safe and this user's own one is used instead."""
    try:
        return lockfiles.choose_lock_dir()
    except lockfiles.UnsafeLockDir as exc:
        raise DisttestError(
            "no safe directory for port locks", kind="lock-dir",
            cause=exc.strerror,
            steps=["remove the directories named (they were not made by this user), "
                   "or set TMPDIR to a directory of your own"]) from None


def default_lock_dir() -> Path:
    return lock_dir_and_note()[0]


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out ports from ``port_range`` and holds their locks until released."""

    def __init__(self, port_range: tuple[int, int], host: str = "127.0.0.1",
                 lock_dir: Path | None = None, reserved=None) -> None:
        self.low, self.high = port_range
        self.host = host
        self.reserved = reserved  # () -> ports never to hand out (kept clusters')
        self.lock_dir_note = None  # why the shared lock directory was not used
        if lock_dir:
            self.lock_dir = Path(lock_dir)
        else:
            self.lock_dir, self.lock_dir_note = lock_dir_and_note()
        self._held: dict[int, int] = {}  # port -> fd of its lock file
        self._lock = threading.Lock()

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    def candidates(self) -> list[int]:
        ports = [p for p in range(self.low, self.high + 1) if p not in WELL_KNOWN_DEV_PORTS]
        # Start at a random point so concurrent runs rarely contend for a port.
        start = random.randrange(len(ports)) if ports else 0
        return ports[start:] + ports[:start]

    def allocate(self, count: int) -> list[int]:
        """``count`` free, locked ports, or PortRangeExhausted with the holders."""
        got: list[int] = []
        reserved = self.reserved() if self.reserved else set()
        with self._lock:
            for port in self.candidates():
                if len(got) == count:
                    break
                if port in self._held or port in reserved:
                    continue
                fd = self._try_lock(port)
                if fd is None:
                    continue
                if not port_is_free(self.host, port):
                    self._unlock(port, fd)
                    continue
                self._held[port] = fd
                got.append(port)
            if len(got) < count:
                for port in got:
                    self._unlock(port, self._held.pop(port))
                raise self._exhausted(count, len(got))
        return got

    def release(self, ports) -> None:
        with self._lock:
            for port in ports:
                fd = self._held.pop(port, None)
                if fd is not None:
                    self._unlock(port, fd)

    def handover(self, ports) -> None:
        """Let go of locks without removing their files: a kept node takes them over."""
        with self._lock:
            for port in ports:
                fd = self._held.pop(port, None)
                if fd is not None:
                    os.close(fd)

    def release_all(self) -> None:
        self.release(list(self._held))

    def path(self, port: int) -> Path:
        """The lock file of ``port``."""
        return self.lock_dir / f"{port}.lock"

    def remove_if_free(self, port: int) -> bool:
        """Remove ``port``'s lock file unless someone holds its lock; True if removed."""
        fd = self._try_lock(port)
        if fd is None:
            return False
        self._unlock(port, fd)
        return True

    def _try_lock(self, port: int) -> int | None:
        return lockfiles.lock(self.path(port))

    def _unlock(self, port: int, fd: int) -> None:
        lockfiles.unlock(self.path(port), fd)

    def _exhausted(self, needed: int, found: int) -> PortRangeExhausted:
        from disttest.resources import port_holders

        holders = port_holders(self.low, self.high, self.lock_dir)
        shown = "; ".join(holders[:8]) + (f"; and {len(holders) - 8} more" if len(holders) > 8 else "")
        return PortRangeExhausted(
            f"port_range {self.low}-{self.high} has only {found} free port(s), "
            f"{needed} needed",
            f"ports in the range are held by: {shown}" if holders else
            "the range is too small for the clusters asked for",
            [f'widen port_range, e.g. port_range = "{self.low}-{min(65535, self.high + max(needed, 100) * 2)}"',
             "stop clusters left running: python -m disttest cluster clean"],
            port_range=(self.low, self.high), needed=needed, holders=holders)
