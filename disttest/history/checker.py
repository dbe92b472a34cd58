"""The linearizability checker: Wing & Gong's search with Lowe's memoisation.

Rationale. A history is linearizable when every completed operation can be
given one instant between its invocation and its completion such that the
operations, applied in that order to the sequential model, return what they
returned. Wing & Gong search for that order depth first over a time-ordered
list of call and return entries: take any pending call whose step the model
accepts, "lift" it (and its return) out of the list, go on; reaching a
return whose call was never taken means this branch failed, so undo the
last choice. Lowe's refinement remembers every (set of linearized
operations, model state) already explored and never explores it twice,
which turns the exponential search into one bounded by the distinct
configurations. Porcupine (Go) and Knossos (Clojure) use the same search;
this one also splits the history into independent keys first
(P-compositionality), so each search is small.

Operations whose outcome is unknown ("info") have no return entry before
the end of time: they may be linearized anywhere after their call or never.
Failed operations certainly did not happen and are left out. A search that
runs past its time limit returns "unknown", never "ok".
"""
from __future__ import annotations

import math
import time
from typing import Any

from disttest.history.models import Model, check_operation_names
from disttest.history.operations import Fault, Operation, faults, operations
from disttest.history.recorder import History

OK, ILLEGAL, UNKNOWN_RESULT = "ok", "illegal", "unknown"


class KeyResult:
    """The verdict for one independent key, and for an illegal one, where it broke.

    ``failed_op`` is the first operation no linearization can place: every
    order of the operations before its completion has been tried.
    ``states`` are the model states the furthest orders reached just before
    it; ``linearized`` the operations those orders had placed; ``window`` the
    operations that explain the violation (see :func:`_window`).
    """

    def __init__(self, key: Any, result: str, ops: list[Operation], explored: int) -> None:
        self.key, self.result, self.ops, self.explored = key, result, ops, explored
        self.failed_op: Operation | None = None
        self.states: list = []
        self.linearized: list[Operation] = []
        self.window: list[Operation] = []


class CheckResult:
    """What :func:`check_linearizable` found: ``result`` is "ok", "illegal" or "unknown"."""

    def __init__(self, result: str, keys: list[KeyResult], model: Model, elapsed: float,
                 history_ops: list[Operation], history_faults: list[Fault], meta: dict,
                 reason: str = "") -> None:
        self.result, self.keys, self.model, self.elapsed = result, keys, model, elapsed
        self.ops, self.faults, self.meta, self.reason = history_ops, history_faults, meta, reason

    @property
    def valid(self) -> bool | None:
        """True if linearizable, False if not, None if the checker could not tell."""
        return {OK: True, ILLEGAL: False}.get(self.result)

    @property
    def failures(self) -> list[KeyResult]:
        return [k for k in self.keys if k.result == ILLEGAL]

    @property
    def seed(self) -> Any:
        return self.meta.get("seed")

    def __repr__(self) -> str:
        return (f"<CheckResult {self.result}: {len(self.ops)} operations, {len(self.keys)} "
                f"keys, {len(self.failures)} illegal, {self.elapsed:.3f}s>")


def check_linearizable(history: History | list, model: Model, timeout: float | None = None
                       ) -> CheckResult:
    """Check ``history`` (a :class:`History` or its events) against ``model``.

    ``timeout`` (seconds, default none) bounds the whole check; past it the
    result is "unknown".
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a disttest Model instance, not {model!r} "
                        "(for example KVMap(), or your own Model subclass)")
    started = time.monotonic()
    deadline = math.inf if timeout is None else started + timeout
    meta = dict(history.meta) if isinstance(history, History) else {}
    all_ops = operations(history)
    unknown_names = check_operation_names(model, all_ops)
    if unknown_names:
        raise ValueError(f"{type(model).__name__} has no operation "
                         f"{', '.join(map(repr, unknown_names))}; it knows "
                         f"{', '.join(model.operations)}")
    keys = []
    result, reason = OK, ""
    # Failed operations did not happen; a read of unknown outcome constrains nothing.
    relevant = [op for op in all_ops if op.status == "ok"
                or (op.status == "info" and op.f not in model.read_only)]
    for key, ops in model.partition(relevant).items():
        if time.monotonic() > deadline:
            keys.append(KeyResult(key, UNKNOWN_RESULT, ops, 0))
            continue
        keys.append(_check_key(key, model.simplify(ops), model, deadline))
    if any(k.result == ILLEGAL for k in keys):
        result = ILLEGAL
    elif any(k.result == UNKNOWN_RESULT for k in keys):
        result = UNKNOWN_RESULT
        reason = (f"the check ran past its time limit of {timeout:g}s with "
                  f"{sum(k.result == UNKNOWN_RESULT for k in keys)} key(s) unchecked")
    return CheckResult(result, keys, model, time.monotonic() - started, all_ops,
                       faults(history), meta, reason)


def _check_key(key: Any, ops: list[Operation], model: Model, deadline: float) -> KeyResult:
    n = len(ops)
    entries = sorted([(op.call, 0, i) for i, op in enumerate(ops)]
                     + [(op.ret, 1, i) for i, op in enumerate(ops)])
    size = len(entries)
    head, tail = size, size + 1
    # a doubly linked list over positions 0..size-1, between sentinels head and tail
    nxt = list(range(1, size)) + [tail] * (size > 0) + [0 if size else tail, tail]
    prv = [head] * (size > 0) + list(range(size - 1)) + [head, size - 1 if size else head]
    is_call = [kind == 0 for _, kind, _ in entries]
    op_of = [i for _, _, i in entries]
    match = [0] * size
    returns = {i: pos for pos, (_, kind, i) in enumerate(entries) if kind == 1}
    for pos, (_, kind, i) in enumerate(entries):
        if kind == 0:
            match[pos] = returns[i]
    counts = [op.status == "ok" for op in ops]
    n_ok = sum(counts)

    step = model.step
    state = model.init()
    lin_ok = lin_info = 0  # bits of the linearized operations: completed ones, unknown ones
    done = 0
    # (completed operations linearized, state) -> the sets of unknown-outcome
    # operations applied with them, each explored already without success
    cache: dict = {}
    stack: list = []
    best_pos, best_lin, best_states = -1, 0, []
    # Operations of unknown outcome are optional: at each point the search
    # first tries the others (phase 0), and only then those (phase 1).
    deferred = [op.status == "info" for op in ops]
    pure = [op.f in model.read_only for op in ops]
    last_phase = 1 if any(deferred) else 0
    phase = 0
    entry = nxt[head]
    explored = 0
    while done < n_ok:
        explored += 1
        if not explored & 0x3FF and time.monotonic() > deadline:
            return KeyResult(key, UNKNOWN_RESULT, ops, explored)
        if is_call[entry]:
            i = op_of[entry]
            if deferred[i] == phase:
                accepted, new_state = step(state, ops[i])
                if accepted:
                    if deferred[i]:
                        new_ok, new_info = lin_ok, lin_info | (1 << i)
                    else:
                        new_ok, new_info = lin_ok | (1 << i), lin_info
                    seen = cache.get((new_ok, new_state))
                    if seen is None:
                        cache[(new_ok, new_state)] = [new_info]
                        fresh = True
                    else:
                        # Explored already with a subset of these unknown-outcome
                        # operations applied: that one could do all this one can.
                        fresh = not any(old | new_info == new_info for old in seen)
                        if fresh:
                            seen.append(new_info)
                    if fresh:
                        stack.append((entry, state, phase, pure[i]))
                        state, lin_ok, lin_info = new_state, new_ok, new_info
                        done += counts[i]
                        # lift the call and its return out of the list
                        p, q = prv[entry], nxt[entry]
                        nxt[p], prv[q] = q, p
                        r = match[entry]
                        p, q = prv[r], nxt[r]
                        nxt[p], prv[q] = q, p
                        entry, phase = nxt[head], 0
                        continue
            entry = nxt[entry]
            continue
        # A return whose call this branch has not placed.
        if phase < last_phase:
            entry, phase = nxt[head], last_phase
            continue
        # Every candidate failed here: note how far this branch got, and undo.
        if entry > best_pos:
            best_pos, best_lin, best_states = entry, lin_ok | lin_info, [state]
        elif entry == best_pos and len(best_states) < 8 and state not in best_states:
            best_states.append(state)
        while True:
            if not stack:
                return _illegal(key, ops, explored, op_of[best_pos], best_lin, best_states)
            entry, state, phase, forced = stack.pop()
            i = op_of[entry]
            if deferred[i]:
                lin_info ^= 1 << i
            else:
                lin_ok ^= 1 << i
            done -= counts[i]
            r = match[entry]
            p, q = prv[r], nxt[r]
            nxt[p], prv[q] = r, r
            p, q = prv[entry], nxt[entry]
            nxt[p], prv[q] = entry, entry
            # A read-only operation the state accepted was placed at once: any
            # order placing it later can place it there, so when that failed,
            # the configuration before it has failed too.
            if not forced:
                break
        entry = nxt[entry]
    return KeyResult(key, OK, ops, explored)


def _illegal(key, ops, explored, failed, linearized_bits, states) -> KeyResult:
    result = KeyResult(key, ILLEGAL, ops, explored)
    result.failed_op = ops[failed]
    result.states = states
    result.linearized = [op for i, op in enumerate(ops) if linearized_bits >> i & 1]
    result.window = _window(ops[failed], ops, result.linearized)
    return result


def _window(failed: Operation, ops: list[Operation], linearized: list[Operation],
            context: int = 3) -> list[Operation]:
    """The operations that explain a violation, in invocation order.

    The failed operation; every operation concurrent with it (it could have
    been ordered either way); and the last ``context`` operations the
    furthest linearization placed before it, which made the state it could
    not accept; and the last operation whose input is the value the failed
    one returned (the write a stale read saw). The states the operations
    before the window leave are listed with it.
    """
    concurrent = [op for op in ops
                  if op is failed or (op.call < failed.ret and op.ret > failed.call)]
    chosen = {id(op): op for op in concurrent if op.ret != math.inf}
    before = [op for op in linearized if id(op) not in chosen]
    before.sort(key=lambda op: (op.ret, op.call))
    for op in before[-context:]:
        chosen[id(op)] = op
    # Where a returned value came from (the write of what a stale read saw).
    if failed.output is not None:
        sources = [op for op in ops if op.input == failed.output and op.call < failed.ret
                   and op is not failed]
        if sources:
            chosen[id(sources[-1])] = sources[-1]
    # An operation of unknown outcome overlaps everything after its call: it
    # belongs to the window only if it began within it.
    start = min(op.call for op in chosen.values())
    for op in concurrent:
        if op.ret == math.inf and op.call >= start:
            chosen[id(op)] = op
    return sorted(chosen.values(), key=lambda op: op.call)
