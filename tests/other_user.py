"""Another local user, for tests of what such a user can and cannot do to a run.

Tests run as root here: another user is simulated by a forked child that
drops to the ``nobody`` uid (or 65534) before doing what it was asked. Where
the tests do not run as root there is no second uid to become, and tests
that need one are skipped with that reason.
"""
from __future__ import annotations

import os
import pwd
import unittest

try:
    OTHER_UID = pwd.getpwnam("nobody").pw_uid
    OTHER_GID = pwd.getpwnam("nobody").pw_gid
except KeyError:
    OTHER_UID = OTHER_GID = 65534


def require_root(testcase: unittest.TestCase | None = None) -> None:
    if os.geteuid() != 0:
        raise unittest.SkipTest("simulating another local user needs a second uid: "
                                "these tests switch to it and so must run as root")


def run_as_other(action, *args) -> None:
    """Run ``action(*args)`` in a child process as the other user; raise if it failed."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the test runner
        os.close(read_end)
        status = 1
        try:
            os.setgroups([])
            os.setgid(OTHER_GID)
            os.setuid(OTHER_UID)
            action(*args)
            status = 0
        except BaseException as exc:  # reported to the parent
            os.write(write_end, repr(exc).encode()[:4000])
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        error = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise AssertionError(f"the other user's action failed: {error or status}")


class HeldByOther:
    """A process of the other user holding an exclusive lock on ``path`` until closed."""

    def __init__(self, path) -> None:
        import fcntl

        ready_r, ready_w = os.pipe()
        self._stop_r, stop_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(ready_r)
            os.close(stop_w)
            try:
                os.setgroups([])
                os.setgid(OTHER_GID)
                os.setuid(OTHER_UID)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                os.write(fd, b"1\n")  # a lie: pid 1 is no disttest run
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(ready_w, b"x")
                os.read(self._stop_r, 1)  # until the test closes its end
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(self._stop_r)
        self._stop_w = stop_w
        got = os.read(ready_r, 1)
        os.close(ready_r)
        if got != b"x":
            self.close()
            raise AssertionError(f"the other user could not lock {path}")

    def close(self) -> None:
        if self._stop_w is not None:
            os.close(self._stop_w)
            self._stop_w = None
            os.waitpid(self.pid, 0)
