"""A history as one self-contained HTML page: no script, no external file.

Clients are rows, each operation a bar from its invocation to its completion
(green ok, red the operation that could not be placed, grey striped an
unknown outcome, which may have taken effect until the end), faults are
translucent bands across every row, and each illegal key's window is
highlighted. Hovering a bar shows the operation (an SVG ``<title>``).
"""
from __future__ import annotations

import html
import math

from disttest.history.checker import CheckResult
from disttest.history.timeline import describe

ROW, LEFT, WIDTH = 26, 160, 1100


def render(result: CheckResult, title: str = "history") -> str:
    ops, faults = result.ops, result.faults
    start = min([op.call for op in ops] + [f.start for f in faults], default=0.0)
    finite = [op.ret for op in ops if op.ret != math.inf] + [op.call for op in ops]
    end = max(finite + [f.end for f in faults if f.end != math.inf] + [start + 1e-6])
    span = end - start

    def x(t: float) -> float:
        return LEFT + (min(t, end) - start) / span * WIDTH

    clients = sorted({str(op.process) for op in ops})
    row = {name: i for i, name in enumerate(clients)}
    height = ROW * (len(clients) + 2)
    failed = {id(k.failed_op) for k in result.failures}
    in_window = {id(op) for k in result.failures for op in k.window}
    parts = []
    for k in result.failures:  # the windows, under everything
        a = min(op.call for op in k.window)
        b = max(min(op.ret, end) for op in k.window)
        parts.append(f'<rect class="window" x="{x(a):.1f}" y="0" width="{max(2, x(b) - x(a)):.1f}"'
                     f' height="{height}"><title>window of key {_e(repr(k.key))}</title></rect>')
    for fault in faults:
        parts.append(f'<rect class="fault" x="{x(fault.start):.1f}" y="0" '
                     f'width="{max(2, x(fault.end) - x(fault.start)):.1f}" height="{height}">'
                     f'<title>{_e(fault.describe())} [{fault.start - start:.3f}s .. '
                     f'{_when(fault.end, start)}]</title></rect>')
        parts.append(f'<text class="fault-label" x="{x(fault.start) + 2:.1f}" '
                     f'y="{height - 6}">{_e(fault.name)}</text>')
    for name, i in row.items():
        parts.append(f'<text x="4" y="{ROW * (i + 1) + 17}">{_e(name)}</text>')
    for op in ops:
        css = ("failed" if id(op) in failed else op.status) + (
            " in-window" if id(op) in in_window else "")
        y = ROW * (row[str(op.process)] + 1) + 4
        a, b = x(op.call), x(op.ret)
        label = f"{op.describe()} [{op.call - start:.4f}s .. {_when(op.ret, start)}]"
        parts.append(f'<rect class="{css}" x="{a:.1f}" y="{y}" width="{max(2, b - a):.1f}" '
                     f'height="{ROW - 8}"><title>{_e(label)}</title></rect>')
    text = describe(result)
    return _PAGE.format(title=_e(title), verdict=_e(result.result), width=LEFT + WIDTH + 20,
                        height=height, shapes="\n".join(parts), report=_e(text),
                        legend=_e(f"{len(ops)} operations by {len(clients)} clients, "
                                  f"{len(faults)} faults, {span:.3f}s"))


def _when(t: float, start: float) -> str:
    return "never completed" if t == math.inf else f"{t - start:.4f}s"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}: {verdict}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
.scroll {{ overflow-x: auto; border: 1px solid #ddd; }}
svg text {{ font: 12px monospace; }}
rect.ok {{ fill: #4caf50; }} rect.info {{ fill: #9e9e9e; fill-opacity: .6; }}
rect.failed {{ fill: #e53935; stroke: #000; stroke-width: 2; }}
rect.in-window {{ stroke: #000; stroke-width: 1; }}
rect.fault {{ fill: #ff9800; fill-opacity: .15; }}
rect.window {{ fill: #ffeb3b; fill-opacity: .35; }}
.fault-label {{ fill: #e65100; }}
</style></head><body>
<h1>{title}: {verdict}</h1>
<p>{legend}. Bars: green ok, grey unknown outcome, red the operation no order explains
(black outline: its window, shaded yellow). Orange bands: faults. Hover for details.</p>
<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">
{shapes}
</svg></div>
<pre>{report}</pre>
</body></html>
"""
