"""Console output: cluster progress while it happens, the summary at the end."""
from __future__ import annotations

import os
import time
from typing import Callable

from disttest.events import Event
from disttest.report.colors import Painter
from disttest.report.stats import RunStats


# Node log prefixes cycle through these roles' colours.
_NODE_ROLES = ("cluster", "pass", "warn", "skip", "title")


class ConsoleProgress:
    """Writes one line per cluster operation to the runner's stream.

    ``mid_line()`` tells whether unittest's own output is in the middle of a
    line (dots, or a verbose test line); a progress line then starts on a new
    line so neither is garbled.
    """

    def __init__(self, stream, paint: Painter, mid_line: Callable[[], bool],
                 verbosity: int = 1, debug: bool = False, live: bool = False) -> None:
        self.stream = stream
        # live: a terminal outside CI, where "starting..." is replaced in place
        # by its outcome; elsewhere every line stays (CI logs, pipes).
        self.live = live
        self._transient = False
        self.paint = paint
        self.mid_line = mid_line
        self.verbosity = verbosity
        self.debug = debug
        self.started = time.monotonic()
        self._seen_diagnoses: set = set()

    def _write(self, text: str, role: str = "cluster", transient: bool = False) -> None:
        if self._transient:
            prefix = "\r\x1b[K"  # replace the transient line
            self._transient = False
        else:
            prefix = "\n" if self.mid_line() else ""
        elapsed = f"[{time.monotonic() - self.started:6.2f}s]"
        end = "\n"
        if transient and self.live:
            end, self._transient = "", True
        self.stream.write(f"{prefix}{self.paint('dim', elapsed)} "
                          f"{self.paint(role, 'disttest:')} {text}{end}")
        self.stream.flush()

    def on_event(self, e: Event) -> None:
        if self.verbosity < 1:
            return
        kind = e.kind
        if kind == "cluster_starting":
            self._write(f"starting cluster {e.cluster} ({e.requirement})...", transient=True)
        elif kind == "cluster_started":
            what = "simulated " if e.simulated else ""
            network = e.data.get("network", "direct")
            how = "" if network == "direct" else f", network {network} ({e.network_reason})"
            self._write(f"{what}cluster {e.cluster} ready: {e.size} node(s) in "
                        f"{e.seconds:.2f}s{how}")
        elif kind == "cluster_reused":
            source = " from a previous run" if e.previous_run else ""
            self._write(f"reusing cluster {e.cluster}{source} ({e.size} node(s), "
                        f"reset in {e.seconds:.2f}s)")
        elif kind == "cluster_growing":
            self._write(f"growing cluster {e.cluster} from {e.size} to {e.to} nodes...",
                        transient=True)
        elif kind == "cluster_grown":
            self._write(f"cluster {e.cluster} grown to {e.size} nodes in {e.seconds:.2f}s")
        elif kind in ("template_started", "preload_learned") and self.verbosity > 1:
            self._write(template_line(e))
        elif kind == "cluster_stopped" and self.verbosity > 1:
            self._write(f"cluster {e.cluster} stopped in {e.seconds:.2f}s")
        elif kind == "cluster_retry":
            self._write(f"cluster start failed ({e.reason}); retry {e.attempt}/{e.of - 1} "
                        f"in {e.delay:.2f}s", "warn")
        elif kind == "cluster_start_failed":
            self._diagnosis(e.error, f"cluster ({e.requirement}) could not start "
                                     f"after {e.attempts} attempt(s)")
        elif kind == "diagnosis":
            self._diagnosis(e.diagnosis, "problem")
        elif kind == "fallback":
            self._write(f"{e.cls}: fallback '{e.policy}': {e.detail}", "warn")
        elif kind == "node_crashed":
            self._write(f"node {e.node} (pid {e.pid}) crashed: {e.status}", "fail")
        elif kind == "node_replaced":
            self._write(f"node {e.node} of cluster {e.cluster} replaced: "
                        f"{'; '.join(e.reasons)}", "warn")
        elif kind == "leak":
            self._write(f"leak in cluster {e.cluster}: {e.detail}", "fail")
        elif kind == "warning":
            self._write(e.message, "warn")
        elif self.debug and kind == "class_finished" and e.data.get("undeclared_ports"):
            for node, ports in e.undeclared_ports.items():
                self._write(f"{e.cls}: {node} of cluster {e.cluster} listened on undeclared "
                            f"port(s) {', '.join(map(str, ports))} (not from the port range: "
                            "they may collide with other runs; declare them in node_ports)",
                            "warn")
        elif kind == "test_slow":
            self._write(slow_test_line(e), "warn")
        elif self.debug and kind == "node_log":
            role = _NODE_ROLES[e.index % len(_NODE_ROLES)]
            self._write(f"{self.paint(role, f'[{e.cluster} {e.node}]')} {e.line}", "dim")
        elif self.debug and kind == "rpc":
            self._write(f"rpc {e.node} {e.call} {'ok' if e.ok else 'raised'} in {e.ms:.2f} ms",
                        "dim")
        elif self.debug and kind == "node_action":
            self._write(f"{e.action} node {e.node} (pid {e.pid})", "dim")
        elif self.debug and kind == "fault":
            detail = ", ".join(f"{k}={v}" for k, v in e.data.items()
                               if k not in ("cluster", "fault"))
            self._write(f"{e.fault} in cluster {e.cluster}" + (f": {detail}" if detail else ""),
                        "dim")
        elif self.debug and kind in ("cluster_resetting", "cluster_reset", "cluster_stopping",
                                     "node_restarted"):
            self._write(f"{kind.replace('_', ' ')} " + ", ".join(
                f"{k}={v}" for k, v in e.data.items()), "dim")

    def _diagnosis(self, error, headline: str) -> None:
        diagnosis = error if hasattr(error, "render") else getattr(error, "diagnosis", None)
        key = diagnosis.to_dict()["problem"] if diagnosis else str(error)
        if key in self._seen_diagnoses:
            return
        self._seen_diagnoses.add(key)
        body = diagnosis.render("    ") if diagnosis else str(error)
        self._write(f"{headline}:\n{body}", "fail")


def template_line(e: Event) -> str:
    """What a node template preloaded, or what ``preload = "auto"`` learned."""
    if e.kind == "preload_learned":
        return (f'preload = "auto": this run\'s nodes imported {e.added} more module(s) to '
                f"preload, recorded in {e.history}")
    text = f"node template (pid {e.pid}) preloaded {e.modules} module(s)"
    if not e.auto:
        return text
    if e.learned:
        return text + (f', {e.learned} of them learned from earlier runs (preload = "auto", '
                       f"{e.history})")
    return text + ' (preload = "auto": nothing learned yet; this run\'s nodes teach it)'


def slow_test_line(e: Event) -> str:
    """``test_slow`` as one line: the test, how long, and the node calls it waits on."""
    if e.waiting:
        calls = ", ".join(f"{c['node']}: {c['call']} (for {c['seconds']:.0f}s)"
                          for c in e.waiting[:3])
        more = f" and {len(e.waiting) - 3} more" if len(e.waiting) > 3 else ""
        waiting = f"waiting on {calls}{more}"
    else:
        waiting = "no node call in progress"
    return f"{e.test} still running after {e.seconds:.0f}s; {waiting}"


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.2f}s"


def _fmt_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size}"


def render_summary(stats: RunStats, usage: dict[str, dict], paint: Painter,
                   cluster_classes: int) -> str:
    """The cluster usage summary printed after unittest's result lines."""
    if not stats.clusters and not stats.fallbacks and not stats.diagnoses:
        return ""
    lines = [paint("title", "Cluster usage")]
    starts = stats.cluster_starts
    lines.append(f"  clusters started: {starts} ({stats.nodes_started} node(s)), "
                 f"reused: {stats.cluster_reuses}, grown: {stats.cluster_grows}"
                 + (f", retries: {stats.retries}" if stats.retries else ""))
    if stats.workers > 1:  # cluster work of the workers overlaps: a sum, not a share
        lines.append(f"  time managing clusters: {_fmt_s(stats.management_s)} summed over "
                     f"{stats.workers} workers, wall time: {_fmt_s(stats.duration_s)}")
    else:
        tests_s = max(0.0, stats.duration_s - stats.management_s)
        lines.append(f"  time managing clusters: {_fmt_s(stats.management_s)}, "
                     f"running tests: {_fmt_s(tests_s)}")
    if stats.clusters:
        lines.append(f"  {'cluster':<10} {'nodes':>5} {'start':>7} {'classes':>7} "
                     f"{'tests':>5} {'fail':>4} {'memory':>8}  note")
    for cid, c in stats.clusters.items():
        u = usage.get(cid, {"classes": [], "tests": 0, "failures": 0})
        notes = []
        if c.simulated:
            notes.append("simulated")
        if c.network not in ("", "direct"):
            notes.append(f"network {c.network}")
        if c.reused_from_previous_run:
            notes.append("from previous run")
        if c.grows:
            notes.append(f"grown {c.grows}x")
        if c.node_crashes or c.nodes_replaced:
            notes.append(f"{c.nodes_replaced} node(s) replaced")
        if c.kept:
            notes.append("kept")
        start = "reused" if c.reused_from_previous_run else _fmt_s(c.startup_s)
        fail = str(u["failures"])
        if u["failures"]:
            fail = paint("fail", fail)
        memory = _fmt_bytes(c.peak_memory) if c.peak_memory else "-"
        lines.append(f"  {cid:<10} {c.size:>5} {start:>7} {len(u['classes']):>7} "
                     f"{u['tests']:>5} {fail:>4} {memory:>8}  {', '.join(notes)}".rstrip())
    started = sorted((c for c in stats.clusters.values() if not c.reused_from_previous_run),
                     key=lambda c: -c.startup_s)
    if len(started) > 1:
        lines.append("  slowest starts: " + ", ".join(
            f"{c.id} {_fmt_s(c.startup_s)}" for c in started[:3]))
    for c in stats.clusters.values():
        if c.network_reason.startswith("auto:"):
            lines.append(f"  network of {c.id}: {c.network} ({c.network_reason[5:].strip()})")
    saved = max(0, cluster_classes - starts)
    if cluster_classes:
        lines.append(f"  reuse saved {saved} cluster start(s): {cluster_classes} cluster "
                     f"class(es) served by {starts} start(s)")
    if stats.node_crashes:
        lines.append(paint("warn", f"  node crashes: {stats.node_crashes}"))
    for f in stats.fallbacks:
        lines.append(paint("warn", f"  {f['policy']}: {f['class']} — {f['detail']}"))
    for leak in stats.leaks:
        lines.append(paint("fail", f"  leak: {leak['detail']} (cluster {leak['cluster']})"))
    for entry in stats.faults:
        counts: dict[str, int] = {}
        for fault in entry["faults"]:
            counts[fault["kind"]] = counts.get(fault["kind"], 0) + 1
        kinds = ", ".join(f"{kind} x{n}" for kind, n in counts.items())
        lines.append(f"  faults in {entry['class'].rsplit('.', 1)[-1]}: {kinds}")
    kept = [c.id for c in stats.clusters.values() if c.kept]
    if kept:
        lines.append(paint("cluster", f"  kept for the next run: {', '.join(kept)} "
                                      "(python -m disttest cluster status)"))
    if stats.saved_logs:
        lines.append(f"  node logs saved in: {os.path.commonpath(stats.saved_logs)}")
    if stats.diagnoses:
        lines.append(paint("title", "Problems") + " (each once; details above)")
        for d in stats.diagnoses:
            lines.append(paint("fail", f"  {d['problem'].splitlines()[0]}"))
            if d["steps"]:
                lines.append(f"    fix: {d['steps'][0]}")
    # The table and counts fit in 80 columns; a line that names a path or a
    # problem stays whole, so it can be searched for and copied.
    return "\n".join(lines)


def closing_line(result) -> str:
    """One plain line any CI log reader understands: "disttest: N passed, N failed"."""
    outcomes = [record.outcome for record in result.records]
    passed = sum(o in ("passed", "expected_failure") for o in outcomes)
    failed = sum(o in ("failed", "error", "unexpected_success") for o in outcomes)
    skipped = outcomes.count("skipped")
    interrupted = outcomes.count("interrupted")
    return (f"disttest: {passed} passed, {failed} failed, {skipped} skipped"
            + (f", {interrupted} interrupted" if interrupted else ""))
