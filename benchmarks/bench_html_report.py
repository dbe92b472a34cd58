"""The HTML report of a large run: its size, what writing it costs, how fast it opens.

A generated suite of 10 cluster classes (one 1-node cluster each, --no-reuse,
so 10 clusters) of 200 tests, each test printing one line on its node (2,000
tests), runs side by side, in interleaved rounds, as whole processes:

* json — ``python -m disttest discover ... --no-reuse --json-report R.json``
* html — the same with ``--html-report R.html`` as well

and prints the median wall times and their ratio (what the HTML report adds
to a run), the HTML file's size against the JSON report's, and, where a
Chromium and chromedriver are installed, the time from opening the page to
the end of its script (the page's own clock, ``performance.now()``). The
targets: under 5 MB and under 2 s. Run from the repository root:

    python benchmarks/bench_html_report.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _util

CLASSES, TESTS = 10, 200


def write_suite(root: Path) -> None:
    tests = root / "tests"
    tests.mkdir(parents=True)
    (tests / "__init__.py").write_text("")
    lines = ["import disttest", "", "", "def say(text):", "    print(text, flush=True)", ""]
    for group in range(CLASSES):
        lines += ["", f"class Group{group}(disttest.DistributedTestCase):", "    cluster_size = 1"]
        for n in range(TESTS):
            lines += [f"    def test_{n:03d}(self):",
                      f"        self.cluster.call_all(say, 'group {group}, test {n}: ' + 'x' * 60)"]
    (tests / "test_many.py").write_text("\n".join(lines) + "\n")


def run(root: Path, *reports: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTTEST_")}
    env.update(NO_COLOR="1", PYTHONPATH=str(_util.REPO_ROOT), DISTTEST_FALLBACK="fail")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "disttest", "discover", "-s", "tests", "-t",
                           ".", "-q", "--no-reuse", *reports], cwd=root, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or f"Ran {CLASSES * TESTS} tests" not in done.stderr:
        sys.exit(f"the run failed:\n{done.stderr[-3000:]}")
    return elapsed


def open_time(page: Path) -> float | None:
    """Seconds from navigation start to the end of the page's script, or None."""
    sys.path.insert(0, str(_util.REPO_ROOT))
    from tests.webdriver import Browser

    paths = Browser.find()
    if paths is None:
        print(f"browser:  not measured: {Browser.missing}")
        return None
    browser = Browser(*paths)
    try:
        browser.open(page.as_uri())
        browser.wait_for("body[data-ready]")
        return browser.script("return performance.now()") / 1000
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _util.setup("HTML report: 2,000 tests on 10 clusters")
    with tempfile.TemporaryDirectory(prefix="disttest-bench-html-") as tmp:
        root = Path(tmp)
        write_suite(root)
        json_path, html_path = root / "r.json", root / "r.html"
        times = {"json": [], "html": []}
        run(root, "--json-report", str(json_path))  # warm-up
        for i in range(args.rounds):
            order = ["json", "html"] if i % 2 == 0 else ["html", "json"]
            for side in order:
                reports = ["--json-report", str(json_path)]
                if side == "html":
                    reports += ["--html-report", str(html_path)]
                times[side].append(run(root, *reports))
        json_s, html_s = statistics.median(times["json"]), statistics.median(times["html"])
        size, json_size = html_path.stat().st_size, json_path.stat().st_size
        print(f"rounds:   {args.rounds} (medians)")
        print(f"run, JSON report only:      {json_s:6.2f} s")
        print(f"run, JSON and HTML reports: {html_s:6.2f} s   ratio {html_s / json_s:.2f}x")
        print(f"HTML report: {size / 1e6:.2f} MB   JSON report: {json_size / 1e6:.2f} MB   "
              f"ratio {size / json_size:.2f}x   (target < 5 MB)")
        opened = open_time(html_path)
        if opened is not None:
            print(f"opens in:    {opened:.2f} s (navigation to the end of its script; "
                  "target < 2 s)")


if __name__ == "__main__":
    main()
