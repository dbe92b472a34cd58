"""A check's verdict as text: the failure message a test prints.

The message names each illegal key, the operation no order can place, the
model states the search reached just before it, and a plain-text timeline of
the window (one row per operation, bars over time, faults as bands), then
the nemesis seed and where the full history was saved.
"""
from __future__ import annotations

import math
from typing import Any

from disttest.history.checker import CheckResult, KeyResult
from disttest.history.operations import Fault, Operation

WIDTH = 40  # characters of the time axis


def describe(result: CheckResult, saved: dict | None = None, max_keys: int = 3) -> str:
    """The text a failed (or undecided) check shows to the reader."""
    model = type(result.model).__name__
    t0 = min((op.call for op in result.ops), default=0.0)
    lines = []
    if result.result == "illegal":
        failures = result.failures
        lines.append(f"history is not linearizable against {model}: {len(failures)} of "
                     f"{len(result.keys)} key(s) illegal ({len(result.ops)} operations, "
                     f"checked in {result.elapsed:.2f}s)")
        for failure in sorted(failures, key=lambda k: k.failed_op.ret)[:max_keys]:
            lines.append("")
            lines.extend(_key_report(failure, result, t0))
        if len(failures) > max_keys:
            lines.append(f"... and {len(failures) - max_keys} more illegal key(s): "
                         + ", ".join(repr(k.key) for k in failures[max_keys:max_keys + 10]))
    elif result.result == "unknown":
        lines.append(f"linearizability against {model} is unknown: {result.reason}")
        lines.append("raise the timeout, or record fewer concurrent operations per key")
    else:
        lines.append(f"history is linearizable against {model} ({len(result.ops)} operations, "
                     f"{len(result.keys)} key(s), {result.elapsed:.2f}s)")
    if result.seed is not None:
        lines.append("")
        lines.append(f"nemesis seed {result.seed}: replay its faults with --seed {result.seed} "
                     f"(or DISTTEST_SEED={result.seed})")
    if saved:
        lines.append("history: " + "  ".join(f"{kind} {path}" for kind, path in saved.items()))
        if "html" in saved:
            lines.append(f"[[ATTACHMENT|{saved['html']}]]")
    return "\n".join(lines)


def _key_report(failure: KeyResult, result: CheckResult, t0: float) -> list[str]:
    op = failure.failed_op
    states = ", ".join(result.model.describe_state(s) for s in failure.states)
    which = "state" if len(failure.states) == 1 else "one of the states"
    key = "" if failure.key is None else f"key {failure.key!r}: "
    lines = [f"{key}no order of the operations explains",
             f"    {op.describe()}    [{_t(op.call, t0)} .. {_t(op.ret, t0)}]",
             f"  the model could only be in {which} {states} just before it "
             f"({len(failure.linearized)} earlier operation(s) placed)",
             f"  window ({len(failure.window)} operations; times in seconds from the "
             f"first operation):"]
    lines.extend("  " + row for row in timeline(failure.window, result.faults, t0, op))
    return lines


def timeline(ops: list[Operation], faults: list[Fault], t0: float,
             marked: Operation | None = None) -> list[str]:
    """Rows of text: each operation as a bar over the window's time span, then faults."""
    if not ops:
        return []
    start = min(op.call for op in ops)
    end = max(op.ret if op.ret != math.inf else op.call for op in ops)
    span = max(end - start, 1e-9)
    # One key per window: the key is said once above it, not on every row.
    labels = [f"{'>' if op is marked else ' '} {op.describe(key=False)}" for op in ops]
    width = min(max(len(label) for label in labels), 60)

    def column(t: float) -> int:
        return min(WIDTH - 1, max(0, int((t - start) / span * (WIDTH - 1))))

    rows = [f"{'':{width}} {_t(start, t0):>9} {'':{WIDTH - 20}} {_t(end, t0):>9}"]
    for op, label in zip(ops, labels):
        a = column(op.call)
        b = column(op.ret) if op.ret != math.inf else WIDTH - 1
        fill = "=" if op.status == "ok" else "?"
        bar = " " * a + "[" + fill * max(0, b - a - 1) + ("]" if op.ret != math.inf else ">")
        rows.append(f"{label[:width]:{width}} |{bar:{WIDTH}}|")
    for fault in faults:
        if fault.start <= end and fault.end >= start:
            a, b = column(fault.start), column(min(fault.end, end))
            band = " " * a + "~" * max(1, b - a + 1)
            rows.append(f"{('  fault: ' + fault.describe())[:width]:{width}} |{band:{WIDTH}}|")
    return rows


def _t(t: float, t0: float) -> str:
    return "never" if t == math.inf else f"+{t - t0:.4f}s"


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
