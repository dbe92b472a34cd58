"""The sign of life of a long test: a ``test_slow`` event past a threshold.

A cluster test that runs longer than ``slow_test_notice`` seconds gets one
event (one console line) saying which test it is and which node calls it is
waiting on, and one more each time the same span passes again. One daemon
thread per session does the watching; it sleeps until the next notice is
due, so a run of short tests costs it nothing but two assignments per test.
"""
from __future__ import annotations

import contextlib
import threading
import time
TYPE_CHECKING = False  # typing is for annotations only
if TYPE_CHECKING:
    from typing import Iterator


class SlowTestWatch:
    """Emits ``test_slow`` events for the test being watched."""

    def __init__(self, events, threshold: float) -> None:
        self.events = events
        self.threshold = threshold
        self._test: tuple | None = None  # (test id, nodes, started, generation)
        self._generation = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def watching(self, test_id: str, nodes: list) -> Iterator[None]:
        """While the block runs, ``test_id`` is the test to speak about."""
        if self.threshold <= 0 or self._closed:
            yield
            return
        with self._changed:
            self._generation += 1
            self._test = (test_id, list(nodes), time.perf_counter(), self._generation)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="disttest-slow-tests",
                                                daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._test = None
                self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _run(self) -> None:
        notified: tuple[int, int] = (0, 0)  # (generation, notices given for it)
        with self._changed:
            while not self._closed:
                test = self._test
                if test is None:
                    self._changed.wait()
                    continue
                test_id, nodes, started, generation = test
                count = notified[1] if notified[0] == generation else 0
                due = started + self.threshold * (count + 1)
                now = time.perf_counter()
                if now < due:
                    self._changed.wait(due - now)
                    continue
                notified = (generation, count + 1)
                self._changed.release()  # the reporters write; the test may end meanwhile
                try:
                    self.events.emit("test_slow", test=test_id, seconds=now - started,
                                     waiting=waiting_on(nodes, now))
                finally:
                    self._changed.acquire()


def waiting_on(nodes: list, now: float) -> list[dict]:
    """The node calls in progress: ``[{"node", "call", "seconds"}]``, longest first."""
    calls = []
    for node in nodes:
        for what, sent in list(node.in_flight.values()):
            calls.append({"node": node.name, "call": what, "seconds": now - sent})
    return sorted(calls, key=lambda call: -call["seconds"])
