"""How a run stops early: Ctrl-C, SIGTERM and SIGHUP.

The rules (docs/running.md states them for users):

* Without ``-c``, Ctrl-C interrupts the test running at that moment, as under
  ``python -m unittest``; SIGTERM and SIGHUP do the same. Unlike unittest, the
  run then still stops every cluster and prints what unittest prints for the
  tests that ran (their failures, ``Ran N tests``, the status line), then one
  line saying what interrupted the run and during which test, and exits with
  128 + the signal's number (130, 143, 129).
* With ``-c``, the first Ctrl-C lets the running test finish and starts no
  other; the run ends the same way, with exit status 130. A second Ctrl-C
  interrupts at once.
* A signal ignored when the run starts (``nohup``, a background job of a
  non-interactive shell) stays ignored.

The test running when the run is interrupted ends without an outcome; the
reports call it "interrupted". An interrupted run is never successful.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

__unittest = True


class RunnerTerminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C, then exit with 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Interruption:
    """What stopped a run early: the signal, and the test it came during or after."""

    __slots__ = ("signum", "test_id", "finished")

    def __init__(self, signum: int, test_id: str | None, finished: bool) -> None:
        self.signum = signum
        self.test_id = test_id      # the test running then, else the last one that ran
        self.finished = finished    # True: that test ran to its end (-c)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def describe(self, tests_run: int) -> str:
        name = {signal.SIGINT: "Ctrl-C (SIGINT)"}.get(self.signum) or _signal_name(self.signum)
        if self.test_id is None:
            where = "before the first test"
        elif self.finished:
            where = f"after {self.test_id} (it ran to its end)"
        else:
            where = f"during {self.test_id}"
        return (f"disttest: run interrupted by {name} {where}; {tests_run} test(s) ran; "
                f"exit status {self.exit_status}")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _notice(text: str) -> None:
    """Write a line from a signal handler: straight to the file descriptor, since
    the handler may run in the middle of a write to the buffered stream."""
    try:
        os.write(sys.stderr.fileno(), f"\n{text}\n".encode())
    except (OSError, ValueError, AttributeError):
        pass  # no usable stderr: the closing line still says it


class InterruptibleSuite:
    """Runs a suite; an interrupt ends it and is recorded on the result, so the
    runner still prints and reports what ran."""

    def __init__(self, suite) -> None:
        self.suite = suite

    def __call__(self, result):
        return self.run(result)

    def run(self, result):
        try:
            self.suite(result)
        except KeyboardInterrupt as stop:
            signum = getattr(stop, "signum", signal.SIGINT)
            result.interrupted(Interruption(signum, *result.interrupted_test))
        finally:
            self.suite = None  # let go of whatever the suite still holds
        return result

    def countTestCases(self) -> int:
        return self.suite.countTestCases() if self.suite is not None else 0


class InterruptHandlers:
    """Installs the run's signal handlers (main thread only) and restores them."""

    TERMINATING = tuple(s for s in (getattr(signal, "SIGTERM", None),
                                    getattr(signal, "SIGHUP", None)) if s is not None)

    def __init__(self, catch_break: bool) -> None:
        self.catch_break = catch_break
        self.result = None  # set by the runner once the result exists
        self.previous: dict[int, object] = {}

    def __enter__(self) -> InterruptHandlers:
        if threading.current_thread() is not threading.main_thread():
            return self
        if self.catch_break and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._install(signal.SIGINT, self._stop_after_test)
        for signum in self.TERMINATING:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self._install(signum, self._terminate)
        return self

    def _install(self, signum: int, handler) -> None:
        self.previous[signum] = signal.signal(signum, handler)

    def _stop_after_test(self, signum, frame) -> None:
        result = self.result
        if result is None or result.interruption is not None:
            raise KeyboardInterrupt  # the second Ctrl-C (or no run yet): at once
        test_id, _ = result.interrupted_test
        result.interrupted(Interruption(signum, test_id, finished=True))
        _notice("disttest: Ctrl-C: stopping after the current test "
                "(press Ctrl-C again to stop at once)")

    @staticmethod
    def _terminate(signum, frame) -> None:
        raise RunnerTerminated(signum)

    def __exit__(self, *exc_info) -> bool:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()
        return False
