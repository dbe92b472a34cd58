"""Where disttest keeps state between runs, and a private directory made safely.

The state directory (kept-cluster records, durations history) is the
platform's per-user state directory (platformdirs), unless the user has no
usable home: a container run under an arbitrary uid with ``HOME`` unset and
no passwd entry, or ``HOME`` pointing somewhere that cannot hold a directory.
Then state goes to ``disttest-<uid>`` under the temporary directory, which is
shared with other users: that directory is created with mode 0700 and used
only if it is a real directory (not a link) owned by this user and closed to
everyone else; otherwise the run stops with an error that says so.
"""
from __future__ import annotations

import os
import pathlib
import stat
import tempfile

from disttest.errors import ConfigError


def default_state_dir() -> pathlib.Path:
    """The per-user state directory: the platform's, else a private one under tmp."""
    home_based = _platform_state_dir()
    if home_based is not None:
        try:
            home_based.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.access(home_based, os.W_OK | os.X_OK):
                return home_based
        except OSError:
            pass
    return private_dir(pathlib.Path(tempfile.gettempdir()), f"disttest-{_uid()}")


def _platform_state_dir() -> pathlib.Path | None:
    """platformdirs' answer, or None when it cannot name an absolute directory."""
    import platformdirs  # only needed when something is kept across runs

    try:
        path = pathlib.Path(platformdirs.user_state_dir("disttest"))
    except (KeyError, OSError, RuntimeError):  # no home directory can be determined
        return None
    return path if path.is_absolute() else None  # "~/..." when the home is unknown


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def private_dir(parent: pathlib.Path, name: str) -> pathlib.Path:
    """``parent/name``, created 0700, or validated when it exists: a directory,
    not a link, owned by this user, open to nobody else. Raises ConfigError."""
    path = parent / name
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"{path}: the state directory cannot be created: {exc}",
                          source=str(path),
                          steps=["set state_dir (or DISTTEST_STATE_DIR) to a writable "
                                 "directory of yours"]) from None
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"{path}: the state directory cannot be examined: {exc}",
                          source=str(path), steps=["set state_dir to a directory of yours"]) from None
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif hasattr(os, "getuid") and info.st_uid != os.getuid():
        problem = f"belongs to another user (uid {info.st_uid})"
    elif info.st_mode & 0o077:
        problem = f"is open to other users (mode {stat.S_IMODE(info.st_mode):04o})"
    if problem:
        raise ConfigError(
            f"{path}: the state directory {problem}; disttest will not use it, since "
            "anyone who can change it could plant records that disttest acts on",
            source=str(path),
            steps=[f"remove {path} if it is not yours to keep, or",
                   "set state_dir (or DISTTEST_STATE_DIR) to a directory of yours, or",
                   "give this user a home directory (HOME)"])
    return path
