"""Registry of clusters kept between runs, in the state directory.

One JSON record per kept cluster, readable by its owner only (it holds the
cluster key). A record is a claim, never trusted on its own: before a run
reuses a kept cluster it checks the interpreter, the project, that every node
process is alive and answers the key, and resets it. Anything that fails is
a stale record: removed, with a note.

Every record is checked for its shape when read (``record_problem``): a file
that is not JSON, or JSON of another shape, is set aside -- renamed to
``<name>.bad``, never deleted, so it can be looked at -- with a note naming
it, and is never handed to the code that uses records.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

from disttest.statefiles import BadFile, exclusive, read_json, set_aside


_TEXT_FIELDS = ("id", "name", "python", "project", "key", "host", "tmpdir")
_NODE_TEXT_FIELDS = ("name", "log_path")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_port(value) -> bool:
    return _is_int(value) and 0 < value < 65536


def record_problem(record: Any) -> str | None:
    """What is wrong with the shape of a registry record, or None when it is usable."""
    if not isinstance(record, dict):
        return f"a record is a JSON object, not {type(record).__name__}"
    for key in _TEXT_FIELDS:
        if not isinstance(record.get(key), str) or not record[key]:
            return f"field {key!r} must be a non-empty string"
    for key in ("created", "last_used", "ttl"):
        if not isinstance(record.get(key), (int, float)) or isinstance(record[key], bool):
            return f"field {key!r} must be a number"
    owner = record.get("owner_pid")
    if owner is not None and not (_is_int(owner) and owner > 0):
        return "field 'owner_pid' must be null or a pid"
    if not isinstance(record.get("env"), list) or not all(
            isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv)
            for kv in record["env"]):
        return "field 'env' must be a list of [name, value] pairs of strings"
    if not isinstance(record.get("port_names"), list) or not all(
            isinstance(x, str) for x in record["port_names"]):
        return "field 'port_names' must be a list of strings"
    nodes = record.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return "field 'nodes' must be a non-empty list"
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            return f"nodes[{i}] must be a JSON object"
        for key in _NODE_TEXT_FIELDS:
            if not isinstance(node.get(key), str):
                return f"nodes[{i}].{key} must be a string"
        if not _is_int(node.get("index")) or node["index"] < 0:
            return f"nodes[{i}].index must be a non-negative integer"
        if not _is_int(node.get("pid")) or node["pid"] <= 1:
            return f"nodes[{i}].pid must be a pid (an integer above 1)"
        if not _is_port(node.get("control_port")):
            return f"nodes[{i}].control_port must be a port number"
        started = node.get("start_time")
        if started is not None and (not isinstance(started, (int, float)) or isinstance(started, bool)):
            return f"nodes[{i}].start_time must be null or a number"
        ports = node.get("ports")
        if not isinstance(ports, dict) or not all(
                isinstance(k, str) and _is_port(v) for k, v in ports.items()):
            return f"nodes[{i}].ports must map names to port numbers"
    return None


class Registry:
    def __init__(self, state_dir: Path, note=None) -> None:
        self.dir = Path(state_dir) / "clusters"
        self.note = note  # (str) -> None: told about every record set aside

    def _ensure(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.dir

    @contextlib.contextmanager
    def locked(self):
        """Hold the registry's lock (blocking): adopting a kept cluster -- check its
        owner, verify its nodes, save this run as the owner -- and deciding what
        ``cluster stop``/``clean`` may stop happen under it, so two processes
        never both take the same cluster. Yields False, holding nothing, when the
        state directory cannot be written (then nothing can be adopted or kept)."""
        try:
            directory = self._ensure()
        except OSError:
            yield False
            return
        with exclusive(directory / ".lock") as held:
            yield held

    def writable_problem(self) -> str | None:
        """Why records cannot be written here, or None when they can."""
        try:
            probe = self._ensure() / f".probe{os.getpid()}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            os.unlink(probe)
        except OSError as exc:
            return f"the state directory {self.dir.parent} is not writable ({exc.strerror})"
        return None

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

    def records(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Every valid record; a bad one is set aside with a note, never yielded."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            try:
                record = read_json(path)
            except FileNotFoundError:
                continue  # removed meanwhile (stopped, or set aside by another reader)
            except BadFile as exc:
                set_aside(path, str(exc), self.note)
                continue
            problem = record_problem(record)
            if problem is None and record["id"] != path.stem:
                problem = f"its id {record['id']!r} is not its file name"
            if problem is not None:
                set_aside(path, problem, self.note)
                continue
            yield path, record

    def find(self, name_or_id: str) -> tuple[Path, dict[str, Any]] | None:
        for path, record in self.records():
            if name_or_id in (record["id"], record["name"]):
                return path, record
        return None

    def remove(self, cluster_id: str) -> None:
        try:
            self.path(cluster_id).unlink()
        except FileNotFoundError:
            pass

    def unrecorded_nodes(self) -> list[int]:
        """Live kept nodes of this registry that no record names (their record
        was removed while they lived): nothing else would ever find them.

        A kept node holds its registry's directory open (agent_kept.py), so
        /proc/<pid>/fd says which registry it belongs to; a node of another
        state directory, or of another user, is never listed.
        """
        import psutil

        recorded = {node["pid"] for _path, record in self.records() for node in record["nodes"]}
        mine = os.path.realpath(self.dir)
        found = []
        for proc in psutil.process_iter(["pid", "uids", "cmdline"]):
            pid = proc.info["pid"]
            try:
                if (pid in recorded or proc.info["uids"].real != os.getuid()
                        or "disttest.agent" not in " ".join(proc.info["cmdline"] or ())):
                    continue
                fds = os.listdir(f"/proc/{pid}/fd")
            except (OSError, TypeError, AttributeError):
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == mine:
                        found.append(pid)
                        break
                except OSError:
                    continue
        return found

    def reserved_ports(self) -> set[int]:
        """Ports of kept clusters whose nodes still live: never hand them out."""
        ports: set[int] = set()
        for _path, record in self.records():
            if any(same_process(n["pid"], n.get("start_time")) for n in record["nodes"]):
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
    """True when ``pid`` runs a disttest node: a command-line match, which any
    process can fake -- never enough on its own to signal it (see same_process)."""
    try:
        import psutil

        return "disttest.agent" in " ".join(psutil.Process(pid).cmdline())
    except Exception:
        return False


def start_time(pid: int) -> float | None:
    """When the kernel started ``pid`` (seconds since the epoch); None when it is gone."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def same_process(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` is still the live process the kernel started at ``started``.

    A record names a node by pid *and* start time: after the node ended, its
    pid may be given to any other process (another run's node, even), which
    has another start time. Without a start time nothing is proved.
    """
    if not pid or started is None:
        return False
    now = start_time(pid)
    return now is not None and abs(now - started) < 0.01 and pid_alive(pid)


# A cluster's temporary directory names the run that made it, so that
# ``cluster clean`` never removes the directory of a run still going (one that
# just made it and has not started its nodes yet included).
OWNER_FILE = ".owner"
UNOWNED_GRACE_S = 600.0  # a directory without an owner file (older disttest): its age


def mark_owner(directory: Path) -> None:
    """Record this process (pid and kernel start time) as ``directory``'s owner."""
    (directory / OWNER_FILE).write_text(f"{os.getpid()} {start_time(os.getpid())}\n")


def owner_alive(directory: Path) -> bool:
    """Whether the run that made ``directory`` may still use it."""
    try:
        fd = os.open(directory / OWNER_FILE, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        try:
            return time.time() - directory.stat().st_mtime < UNOWNED_GRACE_S
        except OSError:
            return False
    except OSError:
        return True  # cannot tell: leave it
    try:
        text = os.read(fd, 100).decode("ascii", "replace").split()
    finally:
        os.close(fd)
    try:
        pid, started = int(text[0]), float(text[1])
    except (IndexError, ValueError):
        return True  # unreadable: not proof of a dead owner
    return same_process(pid, started)


class AdoptedProcess:
    """A kept node started by an earlier run: not our child, reached by pid.

    It counts as alive, and is signalled, only while its pid is still the
    process started at ``started`` (``same_process``).
    """

    def __init__(self, pid: int, control_port: int, log_path: Path,
                 started: float | None) -> None:
        self.pid = pid
        self.control_port = control_port
        self.log_path = log_path
        self.started = started
        self._returncode: int | None = None

    def _same(self) -> bool:
        return same_process(self.pid, self.started)

    def alive(self) -> bool:
        return self._returncode is None and self._same()

    @property
    def returncode(self) -> int | None:
        if self._returncode is None and not self._same():
            self._returncode = 0
        return self._returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._same():
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
        return self.returncode

    def signal(self, signum: int) -> None:
        if self._same():
            try:
                os.kill(self.pid, signum)
            except OSError:
                pass

    has_keeper = False  # a kept node: its template, if any, has let it go

    def outlive_controller(self) -> None:
        """Kept again: it already outlives every controller."""

    def left_behind(self) -> list[int]:
        """Nothing is killed for it by a template."""
        return []

    def close_stdin(self) -> None:
        self.signal(signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        self.signal(signal.SIGTERM)
        if self.wait(timeout) is None:
            self.signal(signal.SIGKILL)
            self.wait(5.0)

    def close_pipes(self) -> None:
        pass
