"""Events: how the pool and the runner tell reporters what happened.

Mechanism emits, reporters subscribe; nothing in the mechanism prints.
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
    "fallback", "leak", "diagnosis", "rpc", "warning", "class_finished", "test_slow",
})


class EventBus:
    """Synchronous publish/subscribe; a failing subscriber never breaks the run."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()

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
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a reporter bug must not break cluster handling
                pass
        return event
