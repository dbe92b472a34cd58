"""Registry of clusters kept between runs, in the state directory.

One JSON record per kept cluster, readable by its owner only (it holds the
cluster key). A record is a claim, never trusted on its own: before a run
reuses a kept cluster it checks the interpreter, the project, that every node
process is alive and answers the key, and resets it. Anything that fails is
a stale record: removed, with a note.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator


class Registry:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "clusters"

    def _ensure(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.dir

    def path(self, cluster_id: str) -> Path:
        return self.dir / f"{cluster_id}.json"

    def save(self, record: dict[str, Any]) -> Path:
        path = self._ensure() / f"{record['id']}.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, path)
        return path

    def records(self) -> Iterator[tuple[Path, dict[str, Any] | None]]:
        """Every record; ``None`` for a file that cannot be read (a stale one)."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            try:
                yield path, json.loads(path.read_text())
            except (OSError, ValueError):
                yield path, None

    def find(self, name_or_id: str) -> tuple[Path, dict[str, Any]] | None:
        for path, record in self.records():
            if record and name_or_id in (record.get("id"), record.get("name")):
                return path, record
        return None

    def remove(self, cluster_id: str) -> None:
        try:
            self.path(cluster_id).unlink()
        except FileNotFoundError:
            pass

    def reserved_ports(self) -> set[int]:
        """Ports of kept clusters whose nodes still live: never hand them out."""
        ports: set[int] = set()
        for _path, record in self.records():
            if record and any(pid_alive(n["pid"]) for n in record.get("nodes", [])):
                for node in record["nodes"]:
                    ports.update(node["ports"].values())
        return ports


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:  # psutil.NoSuchProcess, AccessDenied: treat as not ours/alive
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def is_agent(pid: int) -> bool:
    """True when ``pid`` is a disttest node process (so it is safe to signal)."""
    try:
        import psutil

        return "disttest.agent" in " ".join(psutil.Process(pid).cmdline())
    except Exception:
        return False


class AdoptedProcess:
    """A kept node started by an earlier run: not our child, reached by pid."""

    def __init__(self, pid: int, control_port: int, log_path: Path) -> None:
        self.pid = pid
        self.control_port = control_port
        self.log_path = log_path
        self._returncode: int | None = None

    def alive(self) -> bool:
        return self._returncode is None and pid_alive(self.pid)

    @property
    def returncode(self) -> int | None:
        if self._returncode is None and not pid_alive(self.pid):
            self._returncode = 0
        return self._returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid_alive(self.pid):
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
        return self.returncode

    def signal(self, signum: int) -> None:
        if pid_alive(self.pid) and is_agent(self.pid):
            try:
                os.kill(self.pid, signum)
            except OSError:
                pass

    def close_stdin(self) -> None:
        self.signal(signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        self.signal(signal.SIGTERM)
        if self.wait(timeout) is None:
            self.signal(signal.SIGKILL)
            self.wait(5.0)

    def close_pipes(self) -> None:
        pass
