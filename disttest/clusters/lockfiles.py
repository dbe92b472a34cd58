"""Port lock files in a directory that other local users can write to.

Standard library only: kept nodes (``disttest.agent``) take their port locks
over through these functions too.

The lock directory is shared by every run on the machine, so anything in it
may have been planted by another user. Things that go wrong with a plain
``open(O_CREAT|O_RDWR)`` + truncate + write: a symbolic link named
``<port>.lock`` makes us truncate whatever it points to; a hard link does the
same; a FIFO makes the open hang; a plain file of another user cannot be
written (and once blamed "disttest run pid 1" for its port); a directory
created by another user before us is theirs to empty or fill with links.

Solution: every open uses ``O_NOFOLLOW|O_NONBLOCK`` and never ``O_TRUNC``;
what was opened must be a regular file with one link before anything else
happens; only a file owned by the caller is ever written (its pid, after the
lock is taken and the file is proved to still be the one at the path). A file
of another user is locked read-only -- ``flock`` needs no write access -- so
a planted file nobody holds blocks nothing. A lock directory that is not
owned by root or the caller, or that others may write without the sticky
bit, is not used: a per-user directory replaces it, with a note.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path

SHARED_DIR_NAME = "disttest-port-locks"
_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


class UnsafeLockDir(OSError):
    """Neither the shared lock directory nor the per-user one can be trusted."""


def dir_problem(path: Path, private: bool = False) -> str | None:
    """Why ``path`` is not a safe lock directory, or None when it is.

    Safe: a real directory (not a link) owned by root or the caller, that
    nobody else can write to unless it is sticky (then nobody else can remove
    or replace our files). ``private``: it must be the caller's, mode 0700.
    """
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    me = os.getuid()
    if private:
        if st.st_uid != me:
            return f"is owned by uid {st.st_uid}, not by this user (uid {me})"
        if st.st_mode & 0o077:
            return f"is open to other users (mode {stat.S_IMODE(st.st_mode):o})"
        return None
    if st.st_uid not in (0, me):
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return f"is writable by others without the sticky bit (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _make_dir(path: Path, mode: int) -> None:
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    except OSError:
        return  # dir_problem() says what is wrong
    # mkdir applies the umask; set the mode through a descriptor of the very
    # directory we made (a chmod by name would follow a link swapped in since).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def choose_lock_dir(tmp: str | None = None) -> tuple[Path, str | None]:
    """The lock directory to use, and a one-line note when the shared one was refused.

    The shared ``<tmp>/disttest-port-locks`` (sticky, like /tmp) lets runs of
    every user keep out of each other's ports. When it is not safe, runs of
    this user use ``<tmp>/disttest-port-locks-<uid>`` (0700) instead: they
    still never share a port with each other, and a port another user's run
    holds is still seen as busy when it is bound.
    """
    tmp_dir = Path(tmp or tempfile.gettempdir())
    shared = tmp_dir / SHARED_DIR_NAME
    _make_dir(shared, 0o1777)
    problem = dir_problem(shared)
    if problem is None:
        return shared, None
    private = tmp_dir / f"{SHARED_DIR_NAME}-{os.getuid()}"
    _make_dir(private, 0o700)
    private_problem = dir_problem(private, private=True)
    if private_problem is not None:
        raise UnsafeLockDir(
            errno.EPERM, f"the port lock directory {shared} {problem}, and the per-user "
            f"one {private} {private_problem}")
    return private, (f"port lock directory {shared} {problem}: not used; "
                     f"this user's runs lock ports in {private}")


def open_lock_file(path: Path | str) -> tuple[int, bool] | None:
    """(descriptor, ours) for the lock file at ``path``, created if missing.

    None when the path is not a plain lock file: a link, a directory, a FIFO,
    a file with several names. ``ours``: the caller owns the file, so it may
    write its pid into it; never write to a file that is not ours.
    """
    base = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | base, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM):
            return None  # ELOOP (a link), EISDIR, ENXIO, ...
        try:  # another user's file: lockable read-only
            fd = os.open(path, os.O_RDONLY | base)
        except OSError:
            return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        return None
    return fd, st.st_uid == os.getuid()


def _still_at(fd: int, path) -> bool:
    try:
        at_path = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (at_path.st_ino, at_path.st_dev) == (held.st_ino, held.st_dev)


def lock(path: Path | str, wait: bool = False, attempts: int = 3) -> int | None:
    """A descriptor holding an exclusive lock on the lock file at ``path``, or None.

    None when someone else holds it (unless ``wait``) or the path is not a
    safe lock file. The file is proved to still be the one at the path once
    locked (a releaser may have removed it meanwhile); when it is ours, our
    pid is written into it for ``cluster status`` and diagnoses.
    """
    for _ in range(attempts):
        opened = open_lock_file(path)
        if opened is None:
            return None
        fd, ours = opened
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(fd)
            if exc.errno in _BUSY:
                return None
            raise
        try:
            if _still_at(fd, path):
                if ours:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
        except OSError:
            pass
        os.close(fd)
    return None


def unlock(path: Path | str, fd: int) -> None:
    """Release a lock taken by ``lock`` and remove its file (while still holding it)."""
    try:
        if _still_at(fd, path):
            os.unlink(path)
    except OSError:
        pass
    os.close(fd)


def holder(path: Path) -> tuple[int | None, int | None]:
    """(owner uid, pid written in it) of a lock file, read without following links.

    The pid is only a claim: it is reported only for a file the caller
    owns, and a caller must not act on it without more proof.
    """
    opened = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None, None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, None
        if st.st_uid != os.getuid():
            return st.st_uid, None
        opened = os.pread(fd, 32, 0).strip()
    except OSError:
        return None, None
    finally:
        os.close(fd)
    return os.getuid(), int(opened) if opened.isdigit() else None


def is_held(path: Path) -> bool:
    """Whether some process holds the lock of this lock file (a shared try-lock fails)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # released (removed) meanwhile, or a link: no lock
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops our shared lock, if we got it
    return False
