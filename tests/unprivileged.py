"""Run a command as an ordinary user, also when the test suite runs as root.

As root, the command runs as uid/gid 65534 with no capabilities (``setpriv``),
in a private mount namespace where the directory that hides this Python
installation from other users (``/root``, mode 0700, under pyenv) is replaced
by an open tmpfs holding only the installation: the same interpreter and
packages, none of root's powers. Not as root, the command runs as it is.
"""
from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

UID = GID = 65534
REPO = Path(__file__).resolve().parent.parent

_SCRIPT = """set -e
if [ -n "$HIDDEN" ]; then
    mount --bind "$KEEP" "$HOLD"
    mount -t tmpfs -o mode=755 disttest-open "$HIDDEN"
    mkdir -p "$KEEP"
    mount --move "$HOLD" "$KEEP"
fi
exec setpriv --reuid=$TARGET_UID --regid=$TARGET_UID --clear-groups --inh-caps=-all -- "$@"
"""


def _closed_ancestor(path: Path) -> tuple[Path, Path] | None:
    """The first directory above ``path`` that others cannot enter, and its child on the way."""
    parts = path.parts
    for depth in range(1, len(parts)):
        here = Path(*parts[:depth + 1])
        mode = here.stat().st_mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            if depth + 1 >= len(parts):
                return None
            return here, Path(*parts[:depth + 2])
    return None


def why_not() -> str | None:
    """None when commands can be run as an ordinary user here, else why not."""
    if os.geteuid() != 0:
        return None
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"running as root without {tool!r} to drop to an ordinary user"
    if _closed_ancestor(REPO) is not None:
        return f"the repository {REPO} is not readable by other users"
    # The interpreter's own installation may be hidden (it is opened up in the
    # command's mount namespace); a virtual environment elsewhere must be open.
    installation = _closed_ancestor(Path(sys.executable).resolve())
    for place in (Path(sys.prefix), Path(sys.executable).parent):
        closed = _closed_ancestor(place)
        if closed is not None and closed != installation:
            return (f"{closed[0]} (holding this Python's environment {sys.prefix}) is not "
                    "open to other users")
    return None


def command(argv: list[str], scratch: str | Path) -> tuple[list[str], dict]:
    """``argv`` as an ordinary user: the command and the environment entries it needs.
    ``scratch``: a directory of the caller's, for a mount point."""
    if os.geteuid() != 0:
        return list(argv), {}
    env = {"TARGET_UID": str(UID), "HIDDEN": "", "KEEP": "", "HOLD": ""}
    closed = _closed_ancestor(Path(sys.executable).resolve())
    if closed is not None:
        env["HIDDEN"], env["KEEP"] = map(str, closed)
        env["HOLD"] = os.path.join(scratch, "hold")  # only a mount point, in its namespace
        os.makedirs(env["HOLD"], exist_ok=True)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _SCRIPT, "sh",
            *argv], env


def own_dir(path: str | Path) -> None:
    """Give ``path`` (and what is in it) to the ordinary user the commands run as."""
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, UID, GID)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), UID, GID)


@functools.lru_cache(maxsize=None)
def userns_refusal() -> str | None:
    """Why the ``userns`` network mode cannot work for an ordinary user here, or None."""
    problem = why_not()
    if problem:
        return problem
    with tempfile.TemporaryDirectory() as scratch:
        argv, env = command([sys.executable, "-c",
                             "from disttest.clusters.userns import unavailable; "
                             "print(unavailable() or 'ok')"], scratch)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/",
                              env={**os.environ, **env, "PYTHONPATH": str(REPO)})
    said = done.stdout.strip()
    if done.returncode or said != "ok":
        return said or done.stderr.strip() or f"the probe exited with {done.returncode}"
    return None
