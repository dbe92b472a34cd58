"""Sequential models: what each operation does to an object, one at a time.

A model is a subclass of :class:`Model` with ``init()`` (the initial state)
and ``step(state, op) -> (ok, new_state)``: whether ``op``, applied to
``state``, could have returned what it returned, and the state after it.
States must be hashable and never mutated (tuples, frozensets, numbers):
the checker memoises them.

An operation whose outcome is unknown ("info") reaches ``step`` with
``op.output`` set to :data:`~disttest.history.operations.UNKNOWN`; compare
outputs with ``op.matches(value)``, which accepts anything for those.

Operations on different keys are independent objects unless a model says
otherwise (override :meth:`Model.partition`): the checker then checks each
key on its own, which keeps big histories cheap (P-compositionality).
"""
from __future__ import annotations

from typing import Any, Hashable, Iterable

from disttest.history.operations import UNKNOWN, Operation


class Model:
    """Base of every model; subclass it for your own objects."""

    #: the operation names ``step`` understands (used to report a typo clearly)
    operations: tuple = ()
    #: operations that never change the state: one of unknown outcome is left out
    read_only: tuple = ()

    def init(self) -> Hashable:
        """The state before any operation."""
        return None

    def step(self, state: Any, op: Operation) -> tuple[bool, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define step(state, op)")

    def partition(self, ops: list[Operation]) -> dict[Any, list[Operation]]:
        """Independent groups of operations, checked separately: by ``op.key``."""
        groups: dict[Any, list[Operation]] = {}
        for op in ops:
            groups.setdefault(op.key, []).append(op)
        return groups

    def simplify(self, ops: list[Operation]) -> list[Operation]:
        """The operations of one partition, less any that can never help a linearization.

        Called before the search; the default keeps everything. Dropping an
        operation is sound only when every linearization that uses it still
        works without it.
        """
        return ops

    def describe_state(self, state: Any) -> str:
        return repr(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Register(Model):
    """A read/write register: ``write`` (input: the value), ``read`` (output: the value)."""

    operations = ("read", "write")
    read_only = ("read",)

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def init(self) -> Any:
        return self.initial

    def step(self, state, op):
        if op.f == "read":
            return (op.output is UNKNOWN or op.output == state), state
        if op.f == "write":
            return True, op.input
        return False, state

    def simplify(self, ops):
        """Leave out writes of unknown outcome whose value nothing observed.

        Such a write can only hide the value before it from reads that did
        not see its own, so any linearization that applies it works without
        it. Not when a cas returned False: that observes "not this value".
        """
        observed = set()
        for op in ops:
            if op.f == "read" and op.status == "ok":
                observed.add(_hashable(op.output))
            elif op.f == "cas":
                if op.output is False:
                    return ops
                observed.add(_hashable(op.input[0]))
        return [op for op in ops if not (op.status == "info" and op.f == "write"
                                         and _hashable(op.input) not in observed)]


class CASRegister(Register):
    """A register with ``cas`` (input: ``(expected, new)``).

    An ``ok`` cas swapped; one whose output is ``False`` saw another value and
    changed nothing; a ``fail`` cas is left out like every failed operation.
    """

    operations = ("read", "write", "cas")

    def step(self, state, op):
        if op.f == "cas":
            expected, new = op.input
            if op.output is False:
                return state != expected, state
            if op.output is UNKNOWN:  # maybe applied: it swapped only if it could
                return True, new if state == expected else state
            return state == expected, new
        return Register.step(self, state, op)


class KVMap(CASRegister):
    """A key-value map: ``read``/``write``/``cas`` on ``op.key``, each key checked on its own.

    Record operations with ``history.op(client, "write", value, key=k)``.
    Unset keys read as ``initial`` (None).
    """


class SetModel(Model):
    """A set: ``add`` and ``remove`` (input: the element), ``read`` (output: every element)."""

    operations = ("add", "remove", "read", "contains")
    read_only = ("read", "contains")

    def init(self) -> frozenset:
        return frozenset()

    def step(self, state, op):
        f = op.f
        if f == "add":
            return True, state | {op.input}
        if f == "remove":
            return True, state - {op.input}
        if f == "read":
            return (op.output is UNKNOWN or frozenset(op.output) == state), state
        if f == "contains":
            return op.matches(op.input in state), state
        return False, state

    def describe_state(self, state) -> str:
        return "{" + ", ".join(sorted(map(repr, state))) + "}"


class Counter(Model):
    """A counter: ``add`` (input: the amount, default 1), ``read`` (output: the total)."""

    operations = ("add", "read")
    read_only = ("read",)

    def __init__(self, initial: int = 0) -> None:
        self.initial = initial

    def init(self) -> int:
        return self.initial

    def step(self, state, op):
        if op.f == "add":
            return True, state + (1 if op.input is None else op.input)
        if op.f == "read":
            return (op.output is UNKNOWN or op.output == state), state
        return False, state


class FIFOQueue(Model):
    """A queue: ``enqueue`` (input: the element), ``dequeue`` (output: the head, None if empty)."""

    operations = ("enqueue", "dequeue")

    def init(self) -> tuple:
        return ()

    def step(self, state, op):
        if op.f == "enqueue":
            return True, state + (op.input,)
        if op.f == "dequeue":
            if op.output is UNKNOWN:
                return True, state[1:]
            if not state:
                return op.output is None, state
            return op.output == state[0], state[1:]
        return False, state


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def check_operation_names(model: Model, ops: Iterable[Operation]) -> list[str]:
    """Operation names the model does not know (a typo would read as a violation)."""
    if not model.operations:
        return []
    return sorted({op.f for op in ops} - set(model.operations))
