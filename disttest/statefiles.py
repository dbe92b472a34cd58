"""Reading disttest's own state files (kept-cluster records, durations history).

They live in the state directory, which is private, but are still never
trusted: an older or newer disttest, a crash mid-write, or a hand edit can
leave a file of the wrong shape. Each reader validates what it read; a bad
file is set aside -- renamed to ``<name>.bad``, never deleted, so it can be
looked at -- with a note naming it, and the run goes on as if it were absent.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

MAX_BYTES = 1 << 20  # far above any real record or history


class BadFile(ValueError):
    """A state file that cannot be read or parsed; the message says why."""


def read_json(path: Path) -> Any:
    """The JSON in ``path`` (opened without following a link); FileNotFoundError
    when it is absent, BadFile when it cannot be read or parsed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise BadFile(f"cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise BadFile(f"larger than {MAX_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BadFile(f"not JSON: {exc}") from None


def set_aside(path: Path, problem: str, note: Callable[[str], Any] | None = None) -> None:
    """Rename a bad state file to ``<name>.bad`` and tell ``note`` about it."""
    target = path.with_name(path.name + ".bad")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return  # set aside (or removed) by a concurrent reader
    except OSError as exc:
        if note is not None:
            note(f"{path} is not a valid disttest file ({problem}); it could not be "
                 f"set aside ({exc.strerror}): ignored")
        return
    if note is not None:
        note(f"{path} is not a valid disttest file ({problem}): set aside as {target.name}")


@contextlib.contextmanager
def exclusive(lock_path: Path):
    """Hold an exclusive lock on ``lock_path`` (created 0600 in the private
    state directory, never through a link) while the block runs: how two
    processes that read, change and write one state file take turns. Yields
    False, holding nothing, when the lock file cannot be opened (a read-only
    state directory: then nothing can be written there either)."""
    import fcntl

    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # drops the lock
