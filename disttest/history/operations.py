"""Operations paired from a history's events: what the checker and the views read."""
from __future__ import annotations

import math
from typing import Any, Iterable

from disttest.history.recorder import History


class _Unknown:
    """The output of an operation whose outcome is unknown: it matches any output."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "?"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


class Operation:
    """One operation: invoked at ``call``, completed at ``ret`` (``inf`` if it never was).

    ``status`` is "ok", "fail" or "info"; an "info" operation may have taken
    effect at any time after its call, or never, and its ``output`` is
    :data:`UNKNOWN`.
    """

    __slots__ = ("id", "process", "f", "key", "input", "output", "status", "call", "ret",
                 "error")

    def __init__(self, id: int, process: Any, f: str, key: Any, input: Any, output: Any,
                 status: str, call: float, ret: float, error: Any = None) -> None:
        self.id, self.process, self.f, self.key = id, process, f, key
        self.input, self.output, self.status = input, output, status
        self.call, self.ret, self.error = call, ret, error

    def matches(self, output: Any) -> bool:
        """Whether the model's ``output`` agrees with what the operation returned."""
        return self.output is UNKNOWN or self.output == output

    def describe(self, key: bool = True) -> str:
        """``3: write('x', 1)`` style (client, operation, key, input, output), for messages."""
        args = [] if self.key is None or not key else [repr(self.key)]
        if self.input is not None:
            args.append(repr(self.input))
        text = f"{self.process}: {self.f}({', '.join(args)})"
        if self.status == "ok":
            return text + ("" if self.output is None else f" -> {self.output!r}")
        return text + (f" -> {self.status}" if self.error is None
                       else f" -> {self.status} ({self.error})")

    def __repr__(self) -> str:
        return f"<Operation {self.id} {self.describe()} [{self.call:.6f}, {self.ret:.6f}]>"


class Fault:
    """A fault the nemesis injected: from ``start`` to ``end`` (``inf`` if never healed)."""

    __slots__ = ("id", "name", "detail", "start", "end")

    def __init__(self, id: int, name: str, detail: Any, start: float, end: float) -> None:
        self.id, self.name, self.detail, self.start, self.end = id, name, detail, start, end

    def describe(self) -> str:
        return self.name + (f" {self.detail}" if self.detail not in (None, "", {}) else "")


def operations(history: History | Iterable[tuple]) -> list[Operation]:
    """The operations of ``history`` in invocation order (faults left out).

    An invocation never completed counts as "info": the client may have died
    after the operation took effect.
    """
    events = history.events() if isinstance(history, History) else list(history)
    invoked: dict[int, tuple] = {}
    done: dict[int, tuple] = {}
    for event in events:
        kind, op_id = event[0], event[1]
        if kind == "invoke":
            invoked[op_id] = event
        elif kind in ("ok", "fail", "info"):
            done[op_id] = event
    result = []
    for op_id, (_, _, process, f, key, value, call) in invoked.items():
        end = done.get(op_id)
        if end is None or end[0] == "info":
            error = None if end is None else end[5]
            result.append(Operation(op_id, process, f, key, _freeze(value), UNKNOWN, "info",
                                    call, math.inf, error if end else "never completed"))
        elif end[0] == "fail":
            result.append(Operation(op_id, process, f, key, _freeze(value), None, "fail",
                                    call, end[6], end[5]))
        else:
            result.append(Operation(op_id, process, f, key, _freeze(value), _freeze(end[5]),
                                    "ok", call, end[6]))
    result.sort(key=lambda o: o.call)
    return result


def faults(history: History | Iterable[tuple]) -> list[Fault]:
    """The faults of ``history``, in the order they started."""
    events = history.events() if isinstance(history, History) else list(history)
    started: dict[int, Fault] = {}
    for kind, op_id, _, name, _, value, when in events:
        if kind == "fault":
            started[op_id] = Fault(op_id, name, value, when, math.inf)
        elif kind == "heal" and op_id in started:
            started[op_id].end = when
    return sorted(started.values(), key=lambda f: f.start)


def _freeze(value: Any) -> Any:
    # Values are compared and hashed by models: lists become tuples, sets frozensets.
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value
