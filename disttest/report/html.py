"""The ``--html-report`` page: one self-contained file of the run.

``TimelineEvents`` subscribes to the run's events, as the console, JSON and
JUnit reports do, and keeps when things happened: clusters starting and
stopping, nodes killed, paused, crashed and restarted, each test's time
window with the faults it injected, and the node log lines written during
it. ``build`` joins that with the figures the other reports use (the JSON
document, the console's usage table); ``write`` puts the page
(``disttest/report/html_page.py``) and that data in one file.
"""
from __future__ import annotations

import json
import os
import time

from disttest.events import Event
from disttest.report.histories import history_of

LINES_PER_NODE = 200          # log lines kept per test and node (the last ones)
BYTES_PER_NODE = 32 * 1024    # and at most this much text
LOG_BUDGET = 3 * 1024 * 1024  # bytes of node log lines in one page: failures' first


class TimelineEvents:
    """Subscribe ``on_event``: what happened when, relative to the run's start."""

    def __init__(self, on_logs=None) -> None:
        # on_logs(test id, logs): called with each test's node log window once read
        # (a -j worker sends them on to the controller).
        self.on_logs = on_logs
        self.t0 = time.monotonic()
        self.clusters: dict[str, dict] = {}
        self.node_events: list[dict] = []
        self.class_ends: list[dict] = []
        self.tests: dict[str, dict] = {}

    def _at(self, t: float) -> float:
        return round(t - self.t0, 4)

    def on_event(self, event: Event) -> None:
        handler = getattr(self, "_on_" + event.kind, None)
        if handler:
            handler(event)

    def _cluster(self, e: Event) -> dict:
        return self.clusters.setdefault(e.cluster, {"id": e.cluster, "start": self._at(e.time),
                                                    "size": e.data.get("size", 0)})

    def _on_cluster_starting(self, e: Event) -> None:
        self._cluster(e)

    def _on_cluster_started(self, e: Event) -> None:
        c = self._cluster(e)
        c.update(ready=self._at(e.time), size=e.size, simulated=bool(e.data.get("simulated")),
                 network=e.data.get("network") or "direct")

    def _on_cluster_reused(self, e: Event) -> None:
        c = self._cluster(e)
        c.setdefault("ready", c["start"])
        self._node_event(e, "reuse", "")

    def _on_cluster_grown(self, e: Event) -> None:
        self._cluster(e)["size"] = e.size
        self._node_event(e, "grow", "")

    def _on_cluster_stopped(self, e: Event) -> None:
        self._cluster(e)["stop"] = self._at(e.time)

    def _on_cluster_kept(self, e: Event) -> None:
        self._cluster(e).update(stop=self._at(e.time), kept=True)

    def _node_event(self, e: Event, kind: str, node: str) -> None:
        if e.data.get("cluster"):
            self.node_events.append({"cluster": e.cluster, "node": node, "kind": kind,
                                     "t": self._at(e.time)})

    def _on_node_action(self, e: Event) -> None:
        self._node_event(e, e.action, e.node)

    def _on_node_crashed(self, e: Event) -> None:
        self._node_event(e, "crash", e.node)

    def _on_node_restarted(self, e: Event) -> None:
        self._node_event(e, "restart", e.node)

    def _on_node_replaced(self, e: Event) -> None:
        self._node_event(e, "replace", e.node)

    def _on_test_started(self, e: Event) -> None:
        self.tests[e.test] = {"cluster": e.cluster, "start": self._at(e.time),
                              "marks": dict(e.logs)}

    def _on_test_finished(self, e: Event) -> None:
        test = self.tests.get(e.test)
        if test is None:
            return
        test["end"] = self._at(e.time)
        test["until"] = dict(e.logs)
        test["faults"] = [dict({k: v for k, v in f.items() if k != "time"},
                               t=self._at(f["time"]) if "time" in f else test["end"])
                          for f in e.data.get("faults", [])]

    def _on_class_finished(self, e: Event) -> None:
        """The class's nodes are still there: read each test's window of their logs."""
        self.class_ends.append({"cluster": e.cluster, "t": self._at(e.time)})
        waiting = {i: t for i, t in self.tests.items()
                   if t["cluster"] == e.cluster and "until" in t and "logs" not in t}
        for test in waiting.values():
            test["logs"] = {}
        for node in e.data.get("nodes", []):
            path = getattr(node, "log_path", None)
            if path is None:  # a -j worker sends node names only
                continue
            try:
                with open(path, "rb") as log:
                    for test in waiting.values():
                        self._read_window(log, node.name, test)
            except OSError:
                continue
        if self.on_logs is not None:
            for test_id, test in waiting.items():
                self.on_logs(test_id, test["logs"])
                del self.tests[test_id]  # sent: the worker keeps nothing of it

    def _on_test_logs(self, e: Event) -> None:
        test = self.tests.get(e.test)
        if test is not None:
            test["logs"] = dict(e.logs)

    def _read_window(self, log, name: str, test: dict) -> None:
        start, end = test["marks"].get(name), test["until"].get(name)
        if start is None or end is None or end <= start:
            return
        omitted = 0
        if end - start > BYTES_PER_NODE:
            omitted = -1  # counted below
            start = end - BYTES_PER_NODE
        log.seek(start)
        lines = log.read(end - start).decode("utf-8", "replace").splitlines()
        if omitted:
            lines = lines[1:]  # the first may be cut in the middle
        if len(lines) > LINES_PER_NODE:
            lines = lines[-LINES_PER_NODE:]
            omitted = -1
        test["logs"][name] = {"lines": lines, "cut": bool(omitted)}


def _history_link(details: str, report_dir: str) -> str | None:
    """The saved history view a failure names, relative to the report's directory."""
    found = history_of(details)
    if found is None:
        return None
    path = found["html"]
    try:
        return os.path.relpath(path, report_dir).replace(os.sep, "/")
    except ValueError:  # another drive
        return path


def build(result, stats, timeline: TimelineEvents, config=None, path: str = ".") -> dict:
    """The report's data: the JSON report's figures, the usage table, the timelines."""
    from disttest.report import json_report
    from disttest.report.colors import Painter
    from disttest.report.console import render_summary

    document = json_report.build(result, stats, config)
    document.pop("tests")
    served = len({n for u in result.cluster_usage.values() for n in u["classes"]})
    usage = render_summary(stats, result.cluster_usage, Painter(False), served) or ""
    report_dir = os.path.dirname(os.path.abspath(path))
    tests, budget = [], LOG_BUDGET
    records = sorted(result.records, key=lambda r: r.outcome not in ("failed", "error"))
    kept = {}
    for record in records:  # failures' logs first, while the budget lasts
        window = timeline.tests.get(record.id, {})
        logs = window.get("logs", {})
        size = sum(len(_page_json(node["lines"])) for node in logs.values())
        if size > budget:
            logs = {name: {"lines": [], "cut": True} for name in logs}
        else:
            budget -= size
        kept[record.id] = logs
    for record in result.records:
        window = timeline.tests.get(record.id, {})
        failed = record.outcome in ("failed", "error")
        test = {"id": record.id, "outcome": record.outcome,
                "duration": round(record.duration_s, 4), "cluster": record.cluster,
                "message": record.message, "start": window.get("start"),
                "end": window.get("end"), "faults": window.get("faults", []),
                "logs": kept[record.id]}
        if failed or record.outcome == "unexpected_success":
            test["details"] = record.details
            test["history"] = _history_link(record.details, report_dir)
        if record.subtests:
            test["subtests"] = record.subtests
        tests.append(test)
    return {"summary": document, "usage": usage,
            "clusters": list(timeline.clusters.values()),
            "node_events": timeline.node_events, "class_ends": timeline.class_ends,
            "tests": tests, "end": timeline._at(time.monotonic()),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def render(data: dict) -> str:
    from disttest.report.html_page import PAGE

    return PAGE.replace("/*DATA*/null", _page_json(data), 1)


def _page_json(value) -> str:
    """``value`` as the page holds it (and as its size counts against the budget)."""
    # Inside <script>, "</" could end the element: JSON lets "<" be escaped.
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def write(path: str, data: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(render(data))
    os.replace(tmp, path)  # a reader never sees half a report
