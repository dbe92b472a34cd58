"""Events: how the pool and the runner tell reporters what happened.

Mechanism emits, reporters subscribe; nothing in the mechanism prints. A
subscriber that raises never breaks the run, and is never silent either: the
bus keeps what failed (``failures``), and the runner ends its output with one
"internal error in <reporter>" line for each, so a summary that may be wrong
says so. The exit status stays that of the tests.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
TYPE_CHECKING = False  # typing is for annotations only: a plain run skips its import
if TYPE_CHECKING:
    from typing import Any, Callable


@dataclass(frozen=True)
class Event:
    """Something that happened: its ``kind`` (one of ``KINDS``), its data (read
    as attributes: ``event.cluster``) and when (``time.monotonic()``)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.monotonic)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None


# Every kind that is emitted, so a typo is an error rather than silence.
KINDS = frozenset({
    "cluster_starting", "cluster_started", "cluster_start_failed", "cluster_retry",
    "cluster_reused", "cluster_growing", "cluster_grown", "cluster_resetting", "cluster_reset",
    "cluster_stopping", "cluster_stopped", "cluster_kept",
    "node_crashed", "node_restarted", "node_replaced", "node_log",
    "test_started", "test_finished", "test_logs",
    "fallback", "leak", "diagnosis", "rpc", "warning", "class_finished", "test_slow",
    "node_action", "fault", "template_started", "preload_learned",
})


class EventBus:
    """Synchronous publish/subscribe; a failing subscriber never breaks the run."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()
        # who failed -> [times, the first error in one line]
        self.failures: dict[str, list] = {}
        # Sources that buffer what they report (node log files) are flushed
        # before each other event, so subscribers see things in the order
        # they happened. Their own kinds never flush; the flag keeps a flush
        # from starting another in the same thread.
        self._flushers: list[Callable[[], None]] = []
        self._flushed_kinds: set[str] = set()
        self._flushing = threading.local()

    def add_flusher(self, flush: Callable[[], None], emits: tuple[str, ...]) -> None:
        """Call ``flush()`` before every event not of the kinds it ``emits``."""
        with self._lock:
            self._flushers.append(flush)
            self._flushed_kinds.update(emits)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[Event], None]:
        with self._lock:
            self._subscribers.append(callback)
        return callback

    def unsubscribe(self, callback: Callable[[Event], None]) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def emit(self, kind: str, **data: Any) -> Event:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        event = Event(kind, data)
        with self._lock:
            subscribers, flushers = list(self._subscribers), list(self._flushers)
        if flushers and kind not in self._flushed_kinds \
                and not getattr(self._flushing, "on", False):
            self._flushing.on = True
            try:
                for flush in flushers:
                    try:
                        flush()
                    except Exception:  # like a subscriber: never breaks the run
                        pass
            finally:
                self._flushing.on = False
        for callback in subscribers:
            try:
                callback(event)
            except Exception as exc:  # a reporter bug must not break cluster handling
                self.record_failure(getattr(callback, "__qualname__", repr(callback)), exc)
        return event

    def record_failure(self, who: str, exc: BaseException) -> None:
        """Note that ``who`` (a subscriber or a reporter) raised ``exc``."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f" at {_short_path(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb else ""
        with self._lock:
            failure = self.failures.setdefault(
                who, [0, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                         f"{where}"])
            failure[0] += 1

    def failure_lines(self) -> list[str]:
        """One line per subscriber or reporter that failed, for the end of the output."""
        with self._lock:
            failures = sorted(self.failures.items())
        return [f"disttest: internal error in {who} ({count} time{'s' if count != 1 else ''}, "
                f"first: {first}); the report above may be incomplete; the exit status is "
                "the tests' own" for who, (count, first) in failures]


def _short_path(path: str) -> str:
    """``disttest/report/stats.py`` rather than the whole path, for disttest's own files."""
    marker = "/disttest/"
    return "disttest/" + path.rsplit(marker, 1)[1] if marker in path else path
