"""The ``--junit-xml`` report: JUnit XML as Jenkins, GitLab and GitHub read it.

One ``<testsuite>`` per test class, in the order the classes first reported,
with the class's cluster as ``<properties>``. Where unittest and JUnit differ
(subtests, class and module fixtures, expected failures, output captured by
``-b``) the choices are those of docs/reports.md. Every document is valid
under junit-10.xsd, which the Jenkins xUnit plugin checks its input against
(``tests/junit/JUnit.xsd`` is the subset the tests validate with). That
schema has no ``skipped`` on ``<testsuites>``, so the skip counts are only on
each ``<testsuite>``.
"""
from __future__ import annotations

import os
import re
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

RUN_SUITE = "disttest"  # the suite of run-wide checks that belong to no class
# unittest's _ErrorHolder is named "setUpClass (mod.Class)", "tearDownModule (mod)", ...
_FIXTURE = re.compile(r"^(setUpClass|tearDownClass|setUpModule|tearDownModule) \((\S+)\)$")
# Characters XML 1.0 does not allow (control characters, lone surrogates, U+FFFE/F).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
# What unittest appends to a failure's text under -b (unittest.result.STDOUT_LINE, ...).
_STDOUT, _STDERR = "\nStdout:\n", "\nStderr:\n"
_SUBTEST_CLASS = "unittest.case._SubTest"
_FAILED = {"failed": "failure", "error": "error"}


@dataclass
class _Case:
    """One ``<testcase>`` to write."""

    classname: str
    name: str
    time: float = 0.0
    kind: str | None = None  # "failure", "error", "skipped"; None: passed
    message: str = ""
    type: str = ""
    text: str = ""
    stdout: str = ""
    stderr: str = ""


def build(result, stats, config=None, buffered_output: bool | None = None) -> ET.Element:
    """The ``<testsuites>`` element of ``result`` (a DistributedTestResult) and
    ``stats`` (RunStats). ``buffered_output``: whether failure texts end with
    the output ``-b`` captured (default: ``result.buffer``). ``config`` is
    accepted for the same call shape as json_report.build; nothing in the
    document depends on it yet."""
    buffered = getattr(result, "buffer", False) if buffered_output is None else buffered_output
    texts = _Texts(result)
    suites: dict[str, list[_Case]] = {}
    suite_clusters: dict[str, list[str]] = {}
    for record in result.records:
        suite, name = _place(record)
        suites.setdefault(suite, []).extend(_cases(record, suite, name, texts, buffered))
        used = suite_clusters.setdefault(suite, [])
        if record.cluster and record.cluster not in used:
            used.append(record.cluster)

    clusters = getattr(stats, "clusters", None) or {}
    elapsed, started = None, time.time()
    if stats is not None:
        elapsed = stats.duration_s
        started -= time.perf_counter() - stats.started
    # When the run started: unittest does not tell when each class began.
    timestamp = datetime.fromtimestamp(started).strftime("%Y-%m-%dT%H:%M:%S")
    hostname = _clean(socket.gethostname()) or "localhost"

    root = ET.Element("testsuites", name="disttest")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for suite, cases in suites.items():
        counts = _counts(cases)
        suite_time = sum(c.time for c in cases)
        element = ET.SubElement(root, "testsuite", name=_clean(suite),
                                **{k: str(v) for k, v in counts.items()},
                                time=_seconds(suite_time), timestamp=timestamp,
                                hostname=hostname)
        if suite_clusters.get(suite):
            element.append(_properties(suite_clusters[suite], clusters))
        for case in cases:
            element.append(_testcase(case))
        for key in totals:
            totals[key] += counts[key]
        total_time += suite_time
    for key in ("tests", "failures", "errors"):
        root.set(key, str(totals[key]))
    root.set("time", _seconds(elapsed if elapsed is not None else total_time))
    return root


def write(path: str, result, stats, config=None) -> None:
    """Build the report and write it to ``path``, atomically."""
    root = build(result, stats, config)
    ET.indent(root)  # only whitespace between elements: no text is touched
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        ET.ElementTree(root).write(f, encoding="utf-8", xml_declaration=True)
        f.write(b"\n")
    os.replace(tmp, path)  # a reader never sees half a report


# -- records to test cases ----------------------------------------------------------
def _place(record) -> tuple[str, str]:
    """(suite, testcase name) of a record."""
    if record.classname != record.name:
        return record.classname, record.name
    fixture = _FIXTURE.match(record.name)
    if fixture:  # setUpClass (mod.Class) -> suite mod.Class, testcase setUpClass
        return fixture.group(2), fixture.group(1)
    return RUN_SUITE, record.name  # a run-wide check, such as --strict-cleanup's


class _Texts:
    """What the records leave out, from the result's own lists: the failure text
    of each subtest (queued by id and kind: a description can repeat), each
    test's own failure texts (not its subtests')."""

    def __init__(self, result) -> None:
        self.subtests: dict[tuple[str, str], list[str]] = {}
        self.own: dict[str, list[str]] = {}
        for kind, entries in (("failure", getattr(result, "failures", [])),
                              ("error", getattr(result, "errors", []))):
            for test, text in entries:
                if f"{type(test).__module__}.{type(test).__qualname__}" == _SUBTEST_CLASS:
                    self.subtests.setdefault((test.id(), kind), []).append(text)
                else:
                    self.own.setdefault(test.id(), []).append(text)


def _cases(record, suite: str, name: str, texts: _Texts, buffered: bool) -> list[_Case]:
    case = _Case(suite, name, record.duration_s)
    outcome = record.outcome
    failing = [s for s in record.subtests if s.get("outcome") in _FAILED]
    subcases = [_subtest_case(s, suite, name, texts, buffered) for s in failing]
    skipped = []  # a subtest skipped on its own is a skipped testcase of its own
    for subtest in record.subtests:
        if subtest.get("outcome") == "skipped":
            sub = _Case(suite, f"{name} {subtest.get('description', '')}".strip(),
                        kind="skipped")
            sub.message = subtest.get("message", "")
            skipped.append(sub)
    own = texts.own.get(record.id)
    if subcases and outcome in _FAILED and not own:
        # Only subtests failed: unittest reports nothing for the test itself, the
        # report fails it with a summary and gives each failing subtest its own case.
        case.kind = "error" if any(c.kind == "error" for c in subcases) else "failure"
        case.message = (f"{len(subcases)} subtest{'s' if len(subcases) > 1 else ''} failed: "
                        + ", ".join(c.name for c in subcases))
        case.type = "disttest.SubtestsFailed"
        case.text = _subtest_summary(subcases)
    elif outcome in _FAILED:
        text = own[-1] if subcases and own else record.details
        case.kind = _FAILED[outcome]
        case.text, case.stdout, case.stderr = _split_output(text, buffered)
        case.type = _exception_type(case.text)
        case.message = record.message or case.type or outcome
        if subcases:
            case.text += "\n" + _subtest_summary(subcases)
    elif outcome == "skipped":
        case.kind, case.message = "skipped", record.message
    elif outcome == "expected_failure":
        case.stdout = "expected failure: the test failed, as @unittest.expectedFailure says\n"
    elif outcome == "unexpected_success":
        case.kind, case.message, case.type = "failure", "unexpected success", "UnexpectedSuccess"
        case.text = "the test passed, but it is marked @unittest.expectedFailure\n"
    elif outcome != "passed":  # "interrupted": a signal ended the run during the test
        case.kind, case.type = "error", outcome
        case.message = "the run was stopped before this test ended" \
            if outcome == "interrupted" else outcome
    return [case] + subcases + skipped


def _subtest_case(subtest: dict, suite: str, name: str, texts: _Texts,
                  buffered: bool) -> _Case:
    kind = _FAILED[subtest["outcome"]]
    queue = texts.subtests.get((subtest["id"], kind), [])
    text = queue.pop(0) if queue else subtest.get("message", "")
    case = _Case(suite, f"{name} {subtest.get('description', '')}".strip(), kind=kind)
    case.text, case.stdout, case.stderr = _split_output(text, buffered)
    case.type = _exception_type(case.text)
    first = (subtest.get("message") or "").splitlines()
    case.message = first[0] if first else case.type or kind
    return case


def _subtest_summary(subcases: list[_Case]) -> str:
    lines = ["subtests that failed (each is reported as a testcase of its own):"]
    lines += [f"  {c.name}: {c.message}" for c in subcases]
    return "\n".join(lines) + "\n"


def _split_output(text: str, buffered: bool) -> tuple[str, str, str]:
    """(traceback, stdout, stderr) of a failure text that -b may have extended."""
    if not buffered:
        return text, "", ""
    # The sections are last, so the last markers are unittest's: an exception
    # message may contain "Stdout:" too, and nothing tells the two apart.
    stderr = ""
    cut = text.rfind(_STDERR)
    if cut >= 0:
        text, stderr = text[:cut], text[cut + len(_STDERR):]
    stdout = ""
    cut = text.rfind(_STDOUT)
    if cut >= 0:
        text, stdout = text[:cut], text[cut + len(_STDOUT):]
    return text, stdout, stderr


def _exception_type(traceback_text: str) -> str:
    """The exception's (qualified) name: the first unindented line after the last frame."""
    lines = traceback_text.splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith("  File ")),
                     default=-1)
    for line in lines[last_frame + 1:]:
        if line and not line[0].isspace() and not line.startswith("Traceback "):
            match = _EXCEPTION_LINE.match(line)
            return match.group(1) if match else ""
    return ""


# -- elements ---------------------------------------------------------------------------
def _counts(cases: list[_Case]) -> dict[str, int]:
    return {"tests": len(cases),
            "failures": sum(c.kind == "failure" for c in cases),
            "errors": sum(c.kind == "error" for c in cases),
            "skipped": sum(c.kind == "skipped" for c in cases)}


def _testcase(case: _Case) -> ET.Element:
    element = ET.Element("testcase", classname=_clean(case.classname), name=_clean(case.name),
                         time=_seconds(case.time))
    if case.kind:
        child = ET.SubElement(element, case.kind, message=_clean(case.message))
        if case.type:
            child.set("type", _clean(case.type))
        if case.text:
            child.text = _clean(case.text)
    for tag, text in (("system-out", case.stdout), ("system-err", case.stderr)):
        if text:
            ET.SubElement(element, tag).text = _clean(text)
    return element


def _properties(cluster_ids: list[str], clusters: dict) -> ET.Element:
    """The class's cluster(s): one set of properties each, in the order used."""
    element = ET.Element("properties")

    def add(name: str, value) -> None:
        if isinstance(value, bool):
            value = "true" if value else "false"
        ET.SubElement(element, "property", name=f"disttest.cluster.{name}", value=_clean(value))

    for cid in cluster_ids:
        add("id", cid)
        stats = clusters.get(cid)
        if stats is not None:
            add("size", str(stats.size))
            add("simulated", bool(stats.simulated))
            add("startup_s", f"{stats.startup_s:.3f}")
            add("reused", bool(stats.reused_from_previous_run))
    return element


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _clean(value) -> str:
    """``value`` as text XML 1.0 can hold: each character it cannot is shown escaped."""
    return _NOT_XML.sub(lambda m: _escape(m.group()), str(value))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
