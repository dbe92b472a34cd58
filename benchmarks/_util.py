"""Helpers shared by the benchmark scripts (stdlib only).

Every benchmark calls :func:`setup` first. It

* makes ``disttest`` importable from a source checkout (the repository root
  goes on ``sys.path`` when the package is not installed), and
* byte-compiles the imported ``disttest`` package, so node processes load
  ``.pyc`` files the way they do from an installed package. Without this, a
  machine with ``PYTHONDONTWRITEBYTECODE=1`` recompiles the agent's modules
  from source at every node start, and the benchmark would measure the
  compiler rather than disttest.
"""
from __future__ import annotations

import compileall
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def setup(title: str) -> Path:
    """Import disttest (from the checkout if need be), byte-compile it, print a header."""
    try:
        import disttest
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))
        import disttest
    package_dir = Path(disttest.__file__).resolve().parent
    started = time.perf_counter()
    compileall.compile_dir(str(package_dir), quiet=1)
    compiled_in = time.perf_counter() - started
    print(title)
    print("=" * len(title))
    print(f"date:     {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine:  {platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()} "
          f"{platform.release()}")
    print(f"python:   {platform.python_implementation()} {platform.python_version()} "
          f"({sys.executable})")
    print(f"disttest: {disttest.__version__} from {package_dir}")
    print(f"          byte-compiled with compileall before measuring ({compiled_in * 1000:.0f} ms), "
          "as an installed package would be")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("          (PYTHONDONTWRITEBYTECODE is set: without that step every node start "
              "would recompile disttest from source)")
    print()
    return package_dir


def median(values) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain text table, right-aligned except the first column."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        out = [str(cells[0]).ljust(widths[0])]
        out += [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def verdict(ratio: float, target: float) -> str:
    return f"met (≤ {target:g}×)" if ratio <= target else f"NOT MET (target ≤ {target:g}×)"
