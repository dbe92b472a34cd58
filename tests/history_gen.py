"""Histories made from real sequential executions, for the checker's property tests.

Concurrent clients are simulated by a seeded scheduler: each operation is
invoked, later applied atomically to a real object (a dict, a set, a deque,
not the checker's model), later completed. Such a history is linearizable by
construction (the apply instants are a linearization). The perturbations
change one recorded output so that no linearization can exist.
"""
from __future__ import annotations

import collections
import random

from disttest.history.recorder import History


class Real:
    """The real objects the simulated clients act on, one per model name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.cells: dict = {}
        self.items: set = set()
        self.total = 0
        self.queue: collections.deque = collections.deque()
        self.log: list = []
        self.next_value = 0

    def fresh(self) -> int:
        self.next_value += 1
        return self.next_value

    def draw(self, rng: random.Random, keys: int) -> tuple:
        """(f, key, input) of a random operation."""
        kind = self.kind
        key = f"k{rng.randrange(keys)}" if kind == "kv" else None
        if kind in ("register", "cas", "kv"):
            r = rng.random()
            if r < 0.4:
                return "write", key, self.fresh()
            if kind != "register" and r < 0.55:
                current = self.cells.get(key)
                expected = current if rng.random() < 0.6 else self.next_value + 1000
                return "cas", key, (expected, self.fresh())
            return "read", key, None
        if kind == "set":
            return ("add", None, self.fresh()) if rng.random() < 0.5 else ("read", None, None)
        if kind == "counter":
            return ("add", None, rng.randint(1, 3)) if rng.random() < 0.5 else ("read", None, None)
        if kind == "queue":
            return ("enqueue", None, self.fresh()) if rng.random() < 0.55 else ("dequeue", None, None)
        if kind == "log":
            return ("append", None, self.fresh()) if rng.random() < 0.5 else ("read", None, None)
        raise ValueError(kind)

    def apply(self, f: str, key, value):
        """Apply atomically; returns (output, definite_failure)."""
        if f == "write":
            self.cells[key] = value
            return None, False
        if f == "cas":
            if self.cells.get(key) == value[0]:
                self.cells[key] = value[1]
                return None, False
            return None, True  # recorded as "fail": it did not happen
        if f == "read":
            if self.kind == "set":
                return sorted(self.items), False
            if self.kind == "counter":
                return self.total, False
            if self.kind == "log":
                return list(self.log), False
            return self.cells.get(key), False
        if f == "add" and self.kind == "set":
            self.items.add(value)
            return None, False
        if f == "add":
            self.total += value
            return None, False
        if f == "enqueue":
            self.queue.append(value)
            return None, False
        if f == "dequeue":
            return (self.queue.popleft() if self.queue else None), False
        if f == "append":
            self.log.append(value)
            return None, False
        raise ValueError(f)


def generate(kind: str, seed: int, n_ops: int = 60, clients: int = 4, keys: int = 3,
             info_rate: float = 0.05) -> History:
    """A linearizable history of about ``n_ops`` operations on a real ``kind`` object."""
    rng = random.Random(seed)
    real = Real(kind)
    events: list[tuple] = []
    clock = [0.0]

    def now() -> float:
        clock[0] += rng.choice((0.5, 1.0, 1.0, 2.0))
        return clock[0]

    pending: dict[int, dict] = {}
    next_id = 0
    started = 0
    while started < n_ops or pending:
        client = rng.randrange(clients)
        op = pending.get(client)
        if op is None:
            if started >= n_ops:
                continue
            f, key, value = real.draw(rng, keys)
            op = {"id": next_id, "f": f, "key": key, "applied": False}
            next_id += 1
            started += 1
            pending[client] = op
            events.append(("invoke", op["id"], client, f, key, value, now()))
            op["input"] = value
        elif not op["applied"]:
            if rng.random() < info_rate:  # timed out before it took effect
                events.append(("info", op["id"], client, op["f"], op["key"], "timeout", now()))
                del pending[client]
                continue
            op["output"], op["failed"] = real.apply(op["f"], op["key"], op["input"])
            op["applied"] = True
        else:
            if op["failed"]:
                kind_ = "fail"
            elif rng.random() < info_rate:  # took effect, but the reply was lost
                kind_ = "info"
            else:
                kind_ = "ok"
            value = op["output"] if kind_ == "ok" else "lost"
            events.append((kind_, op["id"], client, op["f"], op["key"], value, now()))
            del pending[client]
    return History(events)


def completed_ops(history: History) -> dict[int, dict]:
    """id -> {f, key, input, output, status, call, ret} from the raw events."""
    ops: dict[int, dict] = {}
    for kind, op_id, _, f, key, value, when in history.events():
        if kind == "invoke":
            ops[op_id] = {"f": f, "key": key, "input": value, "call": when}
        else:
            ops[op_id].update(status=kind, output=value, ret=when)
    return {i: o for i, o in ops.items() if "status" in o}


def set_output(history: History, op_id: int, output) -> History:
    events = [e[:5] + (output,) + e[6:] if e[1] == op_id and e[0] == "ok" else e
              for e in history.events()]
    return History(events)


def perturb(kind: str, history: History, rng: random.Random):
    """(history changed so it cannot be linearized, ids of the changed ops) or None."""
    ops = completed_ops(history)
    done = [(i, o) for i, o in ops.items() if o["status"] == "ok"]
    if kind in ("register", "cas", "kv"):
        # A stale read: w1 completed before w2 began, w2 before the read began;
        # with unique values only w1 writes w1's value, so the read cannot see it.
        writes = [(i, o) for i, o in done if o["f"] == "write"]
        for rid, read in done:
            if read["f"] != "read":
                continue
            for _, w2 in writes:
                if w2["key"] != read["key"] or w2["ret"] >= read["call"]:
                    continue
                for _, w1 in writes:
                    if w1["key"] == read["key"] and w1["ret"] < w2["call"]:
                        return set_output(history, rid, w1["input"]), (rid,)
        return None
    if kind == "set":
        # A read missing an element whose add completed before the read began.
        for rid, read in done:
            if read["f"] != "read":
                continue
            for _, add in done:
                if add["f"] == "add" and add["ret"] < read["call"]:
                    kept = tuple(x for x in read["output"] if x != add["input"])
                    return set_output(history, rid, kept), (rid,)
        return None
    if kind == "counter":
        # A read lower than the adds completed before it began (adds are positive).
        for rid, read in done:
            if read["f"] != "read":
                continue
            floor = sum(o["input"] for _, o in done if o["f"] == "add" and o["ret"] < read["call"])
            if floor > 0:
                return set_output(history, rid, floor - 1), (rid,)
        return None
    if kind == "queue":
        # Two dequeues in real-time order whose values were enqueued in order: swap them.
        deqs = [(i, o) for i, o in done if o["f"] == "dequeue" and o["output"] is not None]
        enq = {o["input"]: o for _, o in done if o["f"] == "enqueue"}
        for i1, d1 in deqs:
            for i2, d2 in deqs:
                e1, e2 = enq.get(d1["output"]), enq.get(d2["output"])
                if e1 and e2 and d1["ret"] < d2["call"] and e1["ret"] < e2["call"]:
                    swapped = set_output(history, i1, d2["output"])
                    return set_output(swapped, i2, d1["output"]), (i1, i2)
        return None
    if kind == "log":
        # A read that returns the log without its first entry, after that append completed.
        for rid, read in done:
            if read["f"] == "read" and read["output"]:
                first = read["output"][0]
                appended = [o for _, o in done if o["f"] == "append" and o["input"] == first]
                if appended and appended[0]["ret"] < read["call"]:
                    return set_output(history, rid, read["output"][1:]), (rid,)
        return None
    raise ValueError(kind)
