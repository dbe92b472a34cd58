"""Shared helpers of disttest's own tests: leak checks and subprocess runs.

What counts as *ours* (so engineers running other suites on the same machine
at the same time never make these checks flaky):

* a node process is ours when its command line is the agent's
  (``from disttest.agent import main``), it is not a zombie, and either this
  process is one of its ancestors or its environment carries
  ``DTTESTS_OWNER_PID=<our pid>``. This module sets that variable at import,
  and every process started from here inherits it, so nodes of a test
  subprocess that outlive it (orphans re-parented to init) are still ours.
  Reading another process's environment can be refused; then a process
  started after us counts as ours (the simpler, less precise rule).
* a port lock is ours when its ``<port>.lock`` file in the lock directory
  holds our pid (released locks are removed, held ones say who holds them).
* a cluster temp dir is ours when its name carries the id of a cluster
  started by a pool this module tracks (``track_pool``; the default session's
  pool is tracked by ``cleanup_default_session``): ``disttest-<id>-*``.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import psutil

REPO = str(Path(__file__).resolve().parent.parent)
AGENT_MARK = "from disttest.agent import main"
# load_config() treats DISTTEST_<KEY> variables as settings and may reject an
# unknown one, so the owner mark uses a name outside that prefix.
OWNER_VAR = "DTTESTS_OWNER_PID"
os.environ[OWNER_VAR] = str(os.getpid())
OWNER = os.environ[OWNER_VAR]

# Clusters kept by other runs (``--keep-cluster``) are adopted from the state
# directory's registry: pools made here and test subprocesses get a state
# directory of their own, so no test ever borrows someone else's nodes.
# (Not put in os.environ: other test modules check how the environment
# configures disttest.)
STATE_DIR = tempfile.mkdtemp(prefix="disttest-tests-state-")
atexit.register(shutil.rmtree, STATE_DIR, True)

_ME = psutil.Process()
_STARTED = _ME.create_time()


def _in_a_worker() -> None:
    """A ``-j`` worker forked from the runner is a test process of its own: the
    processes and kept clusters of the tests its siblings run at the same time
    are not its. (Its state directory lies inside the runner's, removed with it.)"""
    global OWNER, _ME, _STARTED, STATE_DIR
    os.environ[OWNER_VAR] = OWNER = str(os.getpid())
    _ME = psutil.Process()
    _STARTED = _ME.create_time()
    STATE_DIR = os.path.join(STATE_DIR, f"worker-{os.getpid()}")
    os.makedirs(STATE_DIR, exist_ok=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_a_worker)
_cluster_ids: set[str] = set()
_tracked: list = []


# -- what is ours ----------------------------------------------------------------
def _is_ours(proc: psutil.Process) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if _ME.pid in {p.pid for p in proc.parents()}:
            return True
        try:
            return proc.environ().get(OWNER_VAR) == OWNER
        except psutil.AccessDenied:
            return proc.create_time() >= _STARTED
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def our_processes() -> list[psutil.Process]:
    """Live node agents started (directly or not) by this test process."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or ())
        if AGENT_MARK in cmdline and proc.pid != _ME.pid and _is_ours(proc):
            found.append(proc)
    return found


def our_lock_files(lock_dir: Path | None = None, pid: int | None = None) -> list[Path]:
    """Lock files naming ``pid`` (default: this process).

    For another, ended process (a run the test started), a lock file that
    names it but is held right now is not its: a later process that was
    given the same pid holds it (pids are reused, ``pid_max`` may be 32768).
    """
    from disttest.clusters.ports import default_lock_dir

    lock_dir = Path(lock_dir) if lock_dir else default_lock_dir()
    mine = pid is None or pid == os.getpid()
    pid = os.getpid() if pid is None else pid
    held = []
    for path in lock_dir.glob("*.lock"):
        try:
            if path.read_text().strip() == str(pid) and (mine or not _held(path)):
                held.append(path)
        except OSError:  # removed while we looked: released
            pass
    return held


def _held(path: Path) -> bool:
    """Does some process hold the lock on ``path`` now?"""
    import errno
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # and with it our shared lock
    return False


def remove_dead_locks(pid: int) -> int:
    """Remove the lock files a dead process ``pid`` left (a SIGKILLed controller).

    The kernel dropped its locks already, so the files are harmless; removing
    them the way the allocator does (while holding the lock) keeps it safe
    against a run that locks the same port at the same moment.
    """
    import fcntl

    removed = 0
    for path in our_lock_files(pid=pid):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if (os.fstat(fd).st_ino == os.stat(path).st_ino
                    and os.pread(fd, 32, 0).strip() == str(pid).encode()):
                os.unlink(path)
                removed += 1
        except OSError:
            pass  # locked by a live run, or gone: not ours to remove
        finally:
            os.close(fd)
    return removed


def our_temp_dirs(cluster_ids=None, owner: int | None = None) -> list[Path]:
    """Cluster temp dirs of ours: named for one of ``cluster_ids`` (default: every
    tracked cluster) and made by ``owner`` (a run's pid) when given, else by
    no other process still running.

    Cluster ids carry 16 random bits, so over a long run, or beside other runs
    and -j workers on the machine, another process's cluster may share an id
    with one of ours; its directory names that process as its owner.
    """
    ids = _cluster_ids if cluster_ids is None else set(cluster_ids)
    tmp = Path(tempfile.gettempdir())
    found = []
    for directory in (d for cid in sorted(ids) for d in tmp.glob(f"disttest-{cid}-*")):
        try:
            if directory.lstat().st_uid != os.getuid():
                continue  # another user's (its cluster id may match one of ours)
        except OSError:
            continue  # removed while we looked
        made_by = _owner_pid(directory)
        if made_by is not None:
            if owner is not None and made_by != owner:
                continue
            if owner is None and made_by != os.getpid() and not gone(made_by):
                continue
        found.append(directory)
    return found


def run_owner(run) -> int | None:
    """The pid that owns a finished subprocess run's cluster dirs: the run's own,
    unless -j workers (processes of their own) made them."""
    return None if {"-j", "--jobs"} & set(map(str, run.args)) else run.pid


def _owner_pid(directory: Path) -> int | None:
    try:
        return int((directory / ".owner").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def track_pool(pool):
    """Remember the id of every cluster ``pool`` starts (for the temp dir check)."""
    def record(event):
        if event.kind == "cluster_starting":
            _cluster_ids.add(event.cluster)

    pool.events.subscribe(record)
    _cluster_ids.update(entry.id for entry in pool.entries)
    _tracked.append(pool)
    return pool


def make_pool(config=None, **changes):
    """A ClusterPool of the project's configuration (with ``changes``), tracked."""
    from disttest.clusters.pool import ClusterPool
    from disttest.config import load_config

    config = (config or load_config(REPO)).replace(state_dir=STATE_DIR, **changes)
    return track_pool(ClusterPool(config))


# -- checking ---------------------------------------------------------------------
def leaks(pid: int | None = None, cluster_ids=None, processes: bool = True) -> dict[str, list]:
    found = {}
    procs = our_processes() if processes else []
    if procs:
        found["node processes"] = [f"{p.pid}: {' '.join(p.cmdline()[:3])}" for p in procs
                                   if p.is_running()]
    locks = our_lock_files(pid=pid)
    if locks:
        found["port locks"] = [str(p) for p in locks]
    # Tracked clusters are this process's own pools: their dirs name it.
    dirs = our_temp_dirs(cluster_ids, os.getpid() if cluster_ids is None else None)
    if dirs:
        found["temp dirs"] = [str(d) for d in dirs]
    return {k: v for k, v in found.items() if v}


def assert_no_leaks(testcase: unittest.TestCase | None = None, wait: float = 3.0,
                    pid: int | None = None, cluster_ids=None, processes: bool = True) -> None:
    """Fail (or raise AssertionError) when node processes, port locks or
    cluster temp dirs of ours are left; polls up to ``wait`` seconds first.

    ``pid``: whose port locks to look for (default: this process);
    ``cluster_ids``: whose temp dirs (default: every tracked cluster);
    ``processes=False`` skips the node process scan (while other clusters of
    this process are meant to be running).
    """
    deadline = time.monotonic() + wait
    while True:
        found = leaks(pid, cluster_ids, processes)
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if found:
        message = "left behind: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in found.items())
        if testcase is not None:
            testcase.fail(message)
        raise AssertionError(message)


def cleanup_default_session() -> None:
    """Stop the clusters of the default session (if one was made), and reopen it."""
    from disttest import session

    active = session.peek()
    if active is None or getattr(active, "_pool", active) is None:
        return
    pool = active.pool
    _cluster_ids.update(entry.id for entry in pool.entries)
    active.shutdown()
    pool.reopen()


def shutdown_and_check(*pools) -> None:
    """``tearDownModule`` body: stop what the module started, then assert no leaks."""
    for pool in list(pools) + _tracked:
        pool.shutdown()
    _tracked.clear()
    cleanup_default_session()
    assert_no_leaks()


class LeakCheckMixin:
    """Mix into a TestCase (before it): after the class, stop ``pools``, every
    tracked pool and the default session's clusters, then check for leaks.

    For a class that owns every cluster alive at its end; a module whose
    classes share clusters calls :func:`shutdown_and_check` in tearDownModule.
    """

    pools: tuple = ()

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            shutdown_and_check(*cls.pools)
        finally:
            super().tearDownClass()


# -- subprocesses -------------------------------------------------------------------
def python_env(env: dict | None = None) -> dict:
    """A test subprocess's environment: repo on PYTHONPATH, CI detection off, own state dir."""
    merged = dict(os.environ)
    merged.update(env or {})
    path = merged.get("PYTHONPATH", "")
    merged["PYTHONPATH"] = REPO + (os.pathsep + path if path else "")
    merged.setdefault("DISTTEST_CI", "0")
    merged.setdefault("DISTTEST_STATE_DIR", STATE_DIR)
    merged.pop("NO_COLOR", None)
    return merged


def run_python(code_or_args, cwd: str | None = None, env: dict | None = None,
               timeout: float = 60.0, input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -c code`` (a str) or ``python *args`` (a list); capture text output."""
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    return subprocess.run([sys.executable, *args], cwd=cwd or REPO, env=python_env(env),
                          input=input, capture_output=True, text=True, timeout=timeout)


def popen_python(code: str, cwd: str | None = None, env: dict | None = None,
                 **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd or REPO,
                            env=python_env(env), text=True, **kwargs)


def _decorator_skips_count() -> bool:
    """Does this Python's unittest count a test skipped by a decorator in "Ran N"?

    Asked of the running unittest itself (3.12.0-3.12.x left such tests out,
    earlier and later versions count them), never looked up by version.
    """
    class Probe(unittest.TestCase):
        @unittest.skip("probe")
        def test_skipped(self):
            pass

    result = unittest.TestResult()
    Probe("test_skipped").run(result)
    return result.testsRun == 1


_DECORATOR_SKIPS_COUNT = _decorator_skips_count()


def ran(total: int, decorated_skips: int = 0) -> int:
    """unittest's "Ran N" on this Python for ``total`` tests, ``decorated_skips``
    of which are skipped by a decorator (a skipTest() inside a test always counts)."""
    return total if _DECORATOR_SKIPS_COUNT else total - decorated_skips


def unittest_exit_status(tests_run: int, skipped: int = 0, successful: bool = False) -> int:
    """The exit status this Python's ``unittest.main`` gives a result like that
    (from 3.12 on a run of no test exits 5; which runs count as "no test"
    differs between versions), asked of unittest's own TestProgram."""

    class Result:
        testsRun = tests_run

        def __init__(self):
            self.skipped = [None] * skipped

        def wasSuccessful(self):
            return successful

    class Runner:
        def run(self, test):
            return Result()

    program = unittest.TestProgram.__new__(unittest.TestProgram)
    program.catchbreak, program.testRunner, program.test, program.exit = False, Runner(), None, True
    try:
        program.runTests()
    except SystemExit as stop:
        return int(stop.code or 0)
    raise AssertionError("unittest.TestProgram.runTests did not exit")


def pids_left_by_a_killed_runner(testcase: unittest.TestCase, code: str, *args: str) -> list[int]:
    """Run ``python -c code *args``, read the pids it prints on its first line,
    SIGKILL it and return them (each is killed again at clean-up, should it
    outlive what the test expects)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=python_env(),
                            stdout=subprocess.PIPE, text=True)
    testcase.addCleanup(proc.wait)
    testcase.addCleanup(proc.kill)
    pids = [int(word) for word in proc.stdout.readline().split()]
    testcase.addCleanup(kill_quietly, pids)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return pids


def kill_quietly(pids) -> None:
    """SIGKILL each of ``pids`` that still exists (a test's clean-up)."""
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (exited, or a zombie waiting to be reaped)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(predicate, timeout: float = 3.0, interval: float = 0.02):
    """Poll until ``predicate()`` is true; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
