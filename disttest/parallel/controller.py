"""The ``-j`` controller: forks the workers, hands out items, replays results.

``ParallelSuite`` is what ``TextTestRunner.run`` calls with the run's one
result, so the closing lines (``Ran N tests``, failures, ``--durations``) are
unittest's own. Each worker's messages go through ``Controller._translate``,
the one place that turns them into result calls and events. A test's messages
are held until its ``stopTest`` and then replayed at once: progress lines of
tests running side by side never interleave.

Faults. A worker whose connection ends before it said it finished has died:
the test it was running gets an error naming how it died, the tests of its
item that had not started go back to the front of the queue (once; a second
death of the same item reports them as errors), and a new worker is forked
if work remains. Interrupts. ``result.stop()`` (``-f``, ``-c``'s first
Ctrl-C) sends every worker STOP: each finishes its current test and stops
its clusters. A KeyboardInterrupt or SIGTERM in the controller is passed to
every worker as the same signal, their last messages are replayed, and the
interrupt goes on to the runner; a worker that does not finish within the
cleanup grace is killed (its nodes end with it: their stdin closes).
"""
from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections import deque
from multiprocessing.connection import Pipe, wait

from disttest.parallel import messages as m
from disttest.parallel import worker
from disttest.parallel.schedule import WorkItem

__unittest = True

_GRACE_S = 30.0  # beyond cleanup_timeout, for a worker to stop its clusters when told


class _Handle:
    """The controller's view of one worker."""

    def __init__(self, number: int, pid: int, conn) -> None:
        self.number = number
        self.pid = pid
        self.conn = conn
        self.item: WorkItem | None = None
        self.started: set[str] = set()      # ids of the tests of its item that started
        self.pending: list | None = None    # messages of the test in progress
        self.ending = False                 # sent END
        self.finished = False               # said FINISHED: its clusters are stopped
        self.holds: tuple = ("", [], [])    # lock dir, ports, temp dirs (last HOLDS)


class ParallelSuite:
    """Stands for the whole suite in ``TextTestRunner.run``: runs it on workers."""

    def __init__(self, units: list, items: list[WorkItem], jobs: int, settings: dict,
                 events) -> None:
        self.units = units
        self.items = items
        self.jobs = jobs
        self.settings = settings
        self.events = events

    def countTestCases(self) -> int:
        return sum(len(self.units[u].tests) if i is None else len(i)
                   for item in self.items for u, i in item.parts)

    def __call__(self, result):
        Controller(self.units, self.items, self.jobs, self.settings, self.events).run(result)
        return result


class Controller:
    def __init__(self, units: list, items: list[WorkItem], jobs: int, settings: dict,
                 events) -> None:
        self.units = units
        self.queue: deque[WorkItem] = deque(items)
        self.jobs = jobs
        self.settings = settings
        self.events = events
        self.live: list[_Handle] = []
        self.spawned = 0
        self.stopping = False
        self.result = None

    # -- the run ------------------------------------------------------------------------
    def run(self, result) -> None:
        self.result = result
        try:
            for _ in range(min(self.jobs, len(self.queue))):
                self._spawn()
            while self.live:
                if result.shouldStop and not self.stopping:
                    self._stop_all()
                self._dispatch()
                self._receive(timeout=0.2)
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (RunnerTerminated)
            self._interrupt(getattr(interrupt, "signum", signal.SIGINT))
            raise
        finally:
            self._kill_all()

    def _spawn(self) -> None:
        self.spawned += 1
        parent, child = Pipe(duplex=True)
        close_fds = [h.conn.fileno() for h in self.live] + [parent.fileno()]
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        with warnings.catch_warnings():
            # Python 3.12+ warns when a process with threads forks; the worker
            # touches no lock another thread of the controller could hold.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker; never returns
            worker.serve(self.spawned, child, self.units, self.settings, close_fds)
        child.close()
        self.live.append(_Handle(self.spawned, pid, parent))

    def _dispatch(self) -> None:
        for handle in self.live:
            if handle.item is not None or handle.ending:
                continue
            if self.queue and not self.stopping:
                handle.item = self.queue.popleft()
                handle.started = set()
                self._send(handle, m.RUN, id(handle.item), handle.item.parts)
            else:
                handle.ending = True
                self._send(handle, m.END)

    def _send(self, handle: _Handle, *message) -> None:
        try:
            handle.conn.send(message)
        except OSError:
            pass  # it died: its end of file is noticed by _receive

    def _receive(self, timeout: float) -> None:
        by_conn = {h.conn: h for h in self.live}
        for conn in wait(list(by_conn), timeout):
            handle = by_conn[conn]
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._lost(handle)
                continue
            self._translate(handle, message)

    def _stop_all(self) -> None:
        self.stopping = True
        self.queue.clear()  # like unittest's -f and -c: what has not started is not run
        for handle in self.live:
            self._send(handle, m.STOP)

    # -- the one translation point --------------------------------------------------------
    def _translate(self, handle: _Handle, message: tuple) -> None:
        kind = message[0] if isinstance(message, tuple) and message else None
        if kind == m.TEST and message[1] in m.RESULT_CALLS:
            self._test_call(handle, message[1], message[2], message[3])
        elif kind == m.EVENT:
            self.events.emit(message[1], **message[2])
        elif kind == m.ITEM_DONE:
            self._item_done(handle)
        elif kind == m.FINISHED:
            handle.finished = True
        elif kind == m.HOLDS:
            handle.holds = message[1:]
        elif kind != m.READY:
            raise RuntimeError(f"disttest worker {handle.number} sent an unknown message "
                               f"{message!r:.200}")

    def _test_call(self, handle: _Handle, call: str, remote: m.RemoteTest, args: tuple) -> None:
        if call == "startTest":
            handle.started.add(remote.id())
            handle.pending = [(call, remote, args)]
        elif handle.pending is not None:
            handle.pending.append((call, remote, args))
            if call == "stopTest":
                pending, handle.pending = handle.pending, None
                for entry in pending:
                    self._replay(*entry)
        else:  # a class or module fixture's error, outside any test
            self._replay(call, remote, args)

    def _replay(self, call: str, remote: m.RemoteTest, args: tuple) -> None:
        test = remote
        if call in ("addFailure", "addError", "addExpectedFailure"):
            args = (m.exc_info(args[0], call != "addError"),)
        elif call == "addSubTest":
            sub, payload, failure = args
            args = (m.as_subtest(sub), None if payload is None else m.exc_info(payload, failure))
        elif call == "addSkip" and remote.test_case is not None:
            test = m.as_subtest(remote)
        method = getattr(self.result, call, None)
        if method is not None:  # addDuration exists on Python 3.12+ only
            method(test, *args)

    def _item_done(self, handle: _Handle) -> None:
        item, handle.item = handle.item, None
        handle.started = set()
        for unit_index, indices in item.parts if item else ():
            if indices is None:
                self.units[unit_index].tests = []  # run: the controller keeps no test

    # -- workers that end ----------------------------------------------------------------------
    def _lost(self, handle: _Handle) -> None:
        self.live.remove(handle)
        handle.conn.close()
        status = self._reap(handle.pid, 10.0)
        if handle.finished and (handle.item is None or self.stopping):
            if handle.pending:  # interrupted mid-test: its record says so
                for entry in handle.pending:
                    self._replay(*entry)
            return
        _clean_after(*handle.holds, handle.pid)
        self._died(handle, _describe_status(status))

    def _died(self, handle: _Handle, how: str) -> None:
        what = f"disttest worker {handle.number} (pid {handle.pid}) {how}"
        if handle.pending:
            pending, handle.pending = handle.pending, None
            for entry in pending:
                self._replay(*entry)
            current = pending[0][1]
            text = (f"{what} while this test was running; the worker's clusters "
                    f"ended with it\n")
            self._replay("addError", current, (m.RemoteException("WorkerDied", what, text),))
            self._replay("stopTest", current, ())
        item, handle.item = handle.item, None
        rerun = self._remaining(item, handle.started) if item else []
        if rerun and not self.stopping:
            item.attempts += 1
            if handle.started or item.attempts < 2:
                again = WorkItem(rerun, item.weight, item.label, item.starts)
                again.attempts = item.attempts
                self.queue.appendleft(again)
                self.events.emit("warning", message=f"{what}; the rest of {item.label} "
                                                    "runs again on another worker")
            else:
                self._not_run(rerun, f"{what} twice before any test of this item ran; "
                                     "it is not run again")
        else:
            self.events.emit("warning", message=what)
        if self.queue and not self.stopping and len(self.live) < self.jobs:
            self._spawn()

    def _remaining(self, item: WorkItem, started: set[str]) -> list:
        parts = []
        for unit_index, indices in item.parts:
            tests = self.units[unit_index].tests
            wanted = range(len(tests)) if indices is None else indices
            left = [i for i in wanted if tests[i].id() not in started]
            if left:
                parts.append((unit_index, left))
        return parts

    def _not_run(self, parts: list, why: str) -> None:
        error = m.RemoteException("WorkerDied", why, why + "\n")
        for unit_index, indices in parts:
            tests = self.units[unit_index].tests
            for i in indices:
                self.result.startTest(tests[i])
                self.result.addError(tests[i], m.exc_info(error, False))
                self.result.stopTest(tests[i])

    def _interrupt(self, signum: int) -> None:
        """Pass the interrupt on; replay what the workers still send; reap them."""
        self.stopping = True
        self.queue.clear()
        for handle in self.live:
            _signal(handle.pid, signum)
        timeout = float(getattr(self.settings["config"], "cleanup_timeout", 10.0)) + _GRACE_S
        deadline = time.monotonic() + timeout
        try:
            while self.live and time.monotonic() < deadline:
                self._receive(timeout=0.2)
        except KeyboardInterrupt:  # asked twice: no more waiting
            pass

    def _kill_all(self) -> None:
        """Whatever is still running at the end is killed, never left behind."""
        for handle in list(self.live):
            _signal(handle.pid, signal.SIGKILL)
            handle.conn.close()
            self._reap(handle.pid, 5.0)
            _clean_after(*handle.holds, handle.pid)
        self.live.clear()

    @staticmethod
    def _reap(pid: int, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if done:
                return status
            if time.monotonic() > deadline:
                _signal(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.01)


def _clean_after(lock_dir: str, ports: list, tmpdirs: list, pid: int) -> None:
    """Remove what a dead worker (reaped: ``pid`` is proved ours) left: the lock
    files of its ports that still name it (its nodes died with it, and the
    kernel dropped its locks), and its clusters' temporary directories."""
    import shutil
    from pathlib import Path

    from disttest.clusters import lockfiles

    for port in ports:
        path = Path(lock_dir) / f"{port}.lock"
        if lockfiles.holder(path) == (os.getuid(), pid):
            fd = lockfiles.lock(path)  # fails if another run took the port meanwhile
            if fd is not None:
                lockfiles.unlock(path, fd)
    for tmpdir in tmpdirs:
        shutil.rmtree(tmpdir, ignore_errors=True)  # never follows a planted link


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe_status(status: int | None) -> str:
    if status is None:
        return "ended"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}" \
        if hasattr(os, "waitstatus_to_exitcode") else f"exited ({status})"
