"""The recorder: what each client invoked, when, and what came back.

A :class:`History` is an append-only list of events, each a tuple
``(type, id, process, f, key, value, time)``: ``type`` is "invoke", "ok",
"fail" or "info" (the outcome is unknown: a timeout, a crash), or "fault" and
"heal" for what the nemesis did; ``id`` pairs an invocation with its
completion; ``time`` is ``time.monotonic()``, which is one clock for every
process of a machine, so histories recorded on nodes merge with the test's.

Recording costs two short lock holds and two tuple appends per operation
(benchmarks/bench_linearizability.py measures it). The module imports the
standard library only: nodes may import it.
"""
from __future__ import annotations

import itertools
import json
import os
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator

FORMAT = "disttest-history"
VERSION = 1
COMPLETIONS = ("ok", "fail", "info")
EVENT_TYPES = ("invoke",) + COMPLETIONS + ("fault", "heal")
FIELDS = ("type", "id", "process", "f", "key", "value", "time")


class HistoryFormatError(ValueError):
    """A saved history that cannot be read: names the file, the event and what is allowed."""


class Op:
    """One invoked operation, completed once with :meth:`ok`, :meth:`fail` or :meth:`info`.

    As a context manager it completes itself: a block that ends normally is
    ``ok`` (with no output, unless ``ok`` was called), one that raises an
    exception listed in ``fail_on`` is ``fail`` (it certainly did not take
    effect), any other exception is ``info`` (it may or may not have).
    """

    __slots__ = ("history", "id", "process", "f", "key", "fail_on", "done")

    def __init__(self, history: History, op_id: int, process: Any, f: str, key: Any,
                 fail_on: tuple) -> None:
        self.history, self.id, self.process, self.f, self.key = history, op_id, process, f, key
        self.fail_on = fail_on
        self.done = False

    def ok(self, output: Any = None) -> None:
        """It took effect; ``output`` is what it returned (a read's value)."""
        self._complete("ok", output)

    def fail(self, error: Any = None) -> None:
        """It certainly did not take effect (refused, rejected)."""
        self._complete("fail", error)

    def info(self, error: Any = None) -> None:
        """Its outcome is unknown (timed out, connection lost): it may have taken effect."""
        self._complete("info", error)

    def _complete(self, kind: str, value: Any) -> None:
        if self.done:
            raise RuntimeError(f"operation {self.id} ({self.f} by {self.process}) "
                               "was already completed")
        self.done = True
        self.history._append(kind, self.id, self.process, self.f, self.key, value)

    def __enter__(self) -> Op:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.done:
            if exc is None:
                self.ok()
            elif self.fail_on and isinstance(exc, self.fail_on):
                self.fail(f"{exc_type.__name__}: {exc}")
            else:
                self.info(f"{exc_type.__name__}: {exc}")
        return False


class History:
    """A thread-safe recorder of operations and faults.

    ``meta`` holds what explains the run (the nemesis seed, the test id) and
    is saved with the events.
    """

    def __init__(self, events: Iterable[tuple] = (), meta: dict | None = None) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple] = list(events)
        self._ids = itertools.count(max((e[1] for e in self._events), default=-1) + 1)
        self.meta: dict = dict(meta or {})

    # -- recording ---------------------------------------------------------------
    def op(self, process: Any, f: str, value: Any = None, key: Any = None,
           fail_on: tuple = ()) -> Op:
        """Record the invocation of ``f`` by client ``process`` now; complete the returned Op.

        ``key`` names the independent object the operation is on (a key of a
        key-value store): the checker checks each key on its own.
        """
        with self._lock:
            op_id = next(self._ids)
            self._events.append(("invoke", op_id, process, f, key, value, time.monotonic()))
        return Op(self, op_id, process, f, key, fail_on)

    def _append(self, kind: str, op_id: int, process: Any, f: str, key: Any,
                value: Any) -> None:
        with self._lock:
            self._events.append((kind, op_id, process, f, key, value, time.monotonic()))

    def fault(self, name: str, detail: Any = None) -> int:
        """Record that a fault started now; returns the id :meth:`heal` takes."""
        with self._lock:
            fault_id = next(self._ids)
            self._events.append(("fault", fault_id, "nemesis", name, None, detail,
                                 time.monotonic()))
        return fault_id

    def heal(self, fault_id: int, detail: Any = None) -> None:
        """Record that the fault ``fault_id`` ended now."""
        with self._lock:
            name = next((e[3] for e in self._events if e[0] == "fault" and e[1] == fault_id),
                        "fault")
            self._events.append(("heal", fault_id, "nemesis", name, None, detail,
                                 time.monotonic()))

    def merge(self, events: History | Iterable[tuple]) -> None:
        """Add the events of another recorder (a node's), renumbering their ids."""
        incoming = events.events() if isinstance(events, History) else list(events)
        with self._lock:
            renumber: dict[int, int] = {}
            for event in incoming:
                event = _checked(tuple(event), "merged events", len(renumber))
                new_id = renumber.setdefault(event[1], next(self._ids))
                self._events.append(event[:1] + (new_id,) + event[2:])
            self._events.sort(key=lambda e: e[6])

    # -- reading -----------------------------------------------------------------
    def events(self) -> list[tuple]:
        """A copy of the events, in the order they were recorded."""
        with self._lock:
            return list(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.events())

    # -- files -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta,
                "events": [dict(zip(FIELDS, e)) for e in self.events()]}

    def save(self, path: str) -> str:
        """Write the history as JSON to ``path`` (its directory is created); returns ``path``.

        Values that JSON cannot hold are saved as their ``repr``.
        """
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as stream:
            json.dump(self.to_dict(), stream, default=repr)
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str = "history") -> History:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise HistoryFormatError(f"{source}: not a disttest history (expected a JSON "
                                     f"object with \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise HistoryFormatError(f"{source}: history version {data.get('version')!r} "
                                     f"is not supported (this disttest reads version {VERSION})")
        raw = data.get("events")
        if not isinstance(raw, list):
            raise HistoryFormatError(f"{source}: \"events\" must be a list")
        events = []
        for index, item in enumerate(raw):
            if not isinstance(item, dict):
                raise HistoryFormatError(f"{source}: event {index} is not an object")
            events.append(_checked(tuple(_freeze(item.get(name)) for name in FIELDS),
                                   source, index))
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        return cls(events, meta)

    @classmethod
    def load(cls, path: str) -> History:
        """Read a history saved by :meth:`save` (or written by any program in that format)."""
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except OSError as exc:
            raise HistoryFormatError(f"{path}: cannot read the history: {exc.strerror}") from None
        except ValueError as exc:
            raise HistoryFormatError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(data, path)


def _checked(event: tuple, source: str, index: int) -> tuple:
    if len(event) != len(FIELDS):
        raise HistoryFormatError(f"{source}: event {index} has {len(event)} fields, "
                                 f"expected {len(FIELDS)}: {', '.join(FIELDS)}")
    kind, op_id, _, f, _, _, when = event
    if kind not in EVENT_TYPES:
        raise HistoryFormatError(f"{source}: event {index} has type {kind!r}; "
                                 f"allowed: {', '.join(EVENT_TYPES)}")
    if not isinstance(op_id, int) or isinstance(op_id, bool):
        raise HistoryFormatError(f"{source}: event {index} has id {op_id!r}; ids are integers")
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        raise HistoryFormatError(f"{source}: event {index} has time {when!r}; "
                                 "times are numbers of seconds")
    if not isinstance(f, str):
        raise HistoryFormatError(f"{source}: event {index} has f {f!r}; f is a string")
    return event


def _freeze(value: Any) -> Any:
    """JSON lists back into tuples, so loaded values compare and hash like recorded ones."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value
