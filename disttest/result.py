"""DistributedTestResult: unittest's text result, plus which cluster ran what.

Output is unittest's own; in verbose mode a cluster test's line also names
its cluster. Every outcome is recorded with its duration and cluster for the
reports.
"""
from __future__ import annotations

import time
import unittest

from disttest.parallel.messages import RemoteException, RemoteTest

__unittest = True


class TestRecord:
    """One test's outcome for the reports (a plain class: cheap to import and make)."""

    __slots__ = ("id", "outcome", "duration_s", "cluster", "message", "classname", "name",
                 "details", "subtests")

    def __init__(self, id: str, outcome: str = "passed", duration_s: float = 0.0,
                 cluster: str | None = None, message: str = "", classname: str = "",
                 name: str = "", details: str = "", subtests: list | None = None) -> None:
        self.id = id
        self.outcome = outcome
        self.duration_s = duration_s
        self.cluster = cluster
        self.message = message
        self.classname = classname
        self.name = name
        self.details = details
        self.subtests = [] if subtests is None else subtests

    def __repr__(self) -> str:
        return f"TestRecord({self.id!r}, {self.outcome!r})"


def cluster_of(test) -> object | None:
    from disttest.planner import is_cluster_class

    if isinstance(test, RemoteTest):
        return test.cluster
    cls = type(test)
    return cls.__dict__.get("cluster") if is_cluster_class(cls) else None


def _names(test) -> tuple[str, str]:
    if isinstance(test, RemoteTest):
        return test.classname, test.name
    cls = type(test)
    if isinstance(test, unittest.TestCase) and hasattr(test, "_testMethodName"):
        return f"{cls.__module__}.{cls.__qualname__}", test._testMethodName
    description = str(test)
    return description, description


def _message(err) -> str:
    """The first line of an error's message, else its type's name."""
    text = str(err[1])
    if text:
        return text.splitlines()[0]
    return err[1].type_name if isinstance(err[1], RemoteException) else err[0].__name__


class RunProgress:
    """Mixed into a TextTestResult: which test runs now, which ran last, and
    whether the run was interrupted (see disttest.interrupts)."""

    current_test: str | None = None   # id of the test running now
    last_test: str | None = None      # id of the last test that ended
    last_test_settled = True          # did it get an outcome (not cut short)?
    interruption = None               # an Interruption, once the run was interrupted

    # --durations N on a Python whose unittest lacks it (before 3.12): N, else None.
    slowest_wanted: int | None = None
    _started_at = 0.0

    def startTest(self, test) -> None:
        self.current_test, self.last_test_settled = test.id(), False
        if self.slowest_wanted is not None:
            self._started_at = time.perf_counter()
            self.__dict__.setdefault("collected_durations", [])
        super().startTest(test)

    def stopTest(self, test) -> None:
        super().stopTest(test)
        self.last_test, self.current_test = self.current_test, None
        if self.slowest_wanted is not None:
            self.collected_durations.append((str(test), time.perf_counter() - self._started_at))

    def printErrors(self) -> None:
        super().printErrors()
        if self.slowest_wanted is not None:
            self._print_durations()

    def _print_durations(self) -> None:
        """The slowest tests, exactly as unittest prints them from Python 3.12 on."""
        collected = self.__dict__.get("collected_durations")
        if not collected:
            return
        slowest = sorted(collected, key=lambda item: item[1], reverse=True)
        if self.slowest_wanted > 0:
            slowest = slowest[:self.slowest_wanted]
        self.stream.writeln("Slowest test durations")
        self.stream.writeln(self.separator2)
        hidden = False
        for name, elapsed in slowest:
            if not self.showAll and elapsed < 0.001:
                hidden = True
                continue
            self.stream.writeln("%-10s %s" % ("%.3fs" % elapsed, name))
        if hidden:
            self.stream.writeln("\n(durations < 0.001s were hidden; "
                                "use -v to show these durations)")
        else:
            self.stream.writeln("")

    def _settled(self, test) -> None:
        if self.current_test is not None and test.id() == self.current_test:
            self.last_test_settled = True

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        self._settled(test)

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._settled(test)

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._settled(test)

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        self._settled(test)

    def addExpectedFailure(self, test, err) -> None:
        super().addExpectedFailure(test, err)
        self._settled(test)

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        self._settled(test)

    @property
    def interrupted_test(self) -> tuple[str | None, bool]:
        """(the test an interrupt came during or after, whether it ran to its end)."""
        if self.current_test is not None:
            return self.current_test, False
        return self.last_test, self.last_test_settled

    def interrupted(self, interruption) -> None:
        self.interruption = interruption
        self.shouldStop = True

    def wasSuccessful(self) -> bool:
        # An interrupted run proves nothing about the tests it did not run.
        return super().wasSuccessful() and self.interruption is None


class PlainTestResult(RunProgress, unittest.TextTestResult):
    """unittest's text result, for runs that involve no cluster."""


def _from_the_callers_line(err):
    """A disttest error's traceback cut where it enters disttest (``__unittest``
    modules), as unittest cuts failures at its assert methods: the error itself
    says what happened (on a node: its own traceback and output)."""
    from disttest.errors import DisttestError

    kind, value, tb = err
    if not isinstance(value, DisttestError):
        return err  # an unexpected error keeps every frame
    previous = None
    while tb is not None:
        if previous is not None and "__unittest" in tb.tb_frame.f_globals \
                and "__unittest" not in previous.tb_frame.f_globals:
            previous.tb_next = None
            break
        previous, tb = tb, tb.tb_next
    return err


class DistributedTestResult(RunProgress, unittest.TextTestResult):
    """Records per-test outcome, duration and cluster for the reports."""

    def __init__(self, stream, descriptions, verbosity, **kwargs) -> None:
        super().__init__(stream, descriptions, verbosity, **kwargs)
        self.records: list[TestRecord] = []
        self._current: dict[str, tuple[TestRecord, float]] = {}
        self.cluster_usage: dict[str, dict] = {}
        self.mid_line = False  # is the stream in the middle of a dots/verbose line?
        self.before_report = None  # called by stopTestRun, before unittest prints results

    # -- hooks ---------------------------------------------------------------------
    def getDescription(self, test) -> str:
        if isinstance(test, RemoteTest):
            return test.description  # as the worker's result described it
        text = super().getDescription(test)
        cluster = cluster_of(test)
        if cluster is not None and self.showAll:
            kind = "simulated cluster" if cluster.simulated else "cluster"
            text += f" [{kind} {cluster.id}]"
        return text

    def startTest(self, test) -> None:
        classname, name = _names(test)
        # "interrupted" until an outcome arrives: SIGTERM ends a test without one.
        record = TestRecord(test.id(), "interrupted", classname=classname, name=name)
        cluster = cluster_of(test)
        if cluster is not None:
            record.cluster = cluster.id
            usage = self.cluster_usage.setdefault(cluster.id, {"classes": [], "tests": 0,
                                                               "failures": 0})
            usage["tests"] += 1
            label = classname
            if label not in usage["classes"]:
                usage["classes"].append(label)
        self._current[test.id()] = (record, time.perf_counter())
        self.records.append(record)
        super().startTest(test)
        self.mid_line = self.showAll

    def _exc_info_to_string(self, err, test) -> str:
        if isinstance(err[1], RemoteException):
            return err[1].text  # formatted by the worker that ran the test
        return super()._exc_info_to_string(err, test)

    def stopTestRun(self) -> None:
        if self.before_report is not None:
            callback, self.before_report = self.before_report, None
            callback(self)
        super().stopTestRun()

    def stopTest(self, test) -> None:
        super().stopTest(test)
        entry = self._current.pop(test.id(), None)
        if entry:
            record, started = entry
            remote = getattr(test, "duration_s", None) if isinstance(test, RemoteTest) else None
            record.duration_s = time.perf_counter() - started if remote is None else remote
            if record.outcome == "interrupted" and record.subtests and not self.shouldStop:
                # unittest reports no outcome for a test whose only other result was
                # a skipped subtest: it ran to its end, so its subtests decide.
                failed = [t for t in record.subtests if t["outcome"] in ("failed", "error")]
                record.outcome = failed[0]["outcome"] if failed else "passed"

    def _record(self, test, outcome: str, err=None, reason: str = "") -> None:
        entry = self._current.get(test.id())
        if entry is None:  # class/module fixture errors come without startTest
            classname, name = _names(test)
            record = TestRecord(test.id(), classname=classname, name=name)
            self.records.append(record)
        else:
            record = entry[0]
        if record.outcome in ("failed", "error") and outcome in ("passed",):
            return
        record.outcome = outcome
        self.mid_line = self.dots
        if err is not None:
            record.message = _message(err)
            record.details = self._exc_info_to_string(err, test)
        elif reason:
            record.message = reason
        if record.cluster and outcome in ("failed", "error"):
            self.cluster_usage[record.cluster]["failures"] += 1

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._record(test, "failed", err)

    def addError(self, test, err) -> None:
        err = _from_the_callers_line(err)
        super().addError(test, err)
        self._record(test, "error", err)

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        parent = getattr(test, "test_case", None)  # a subTest skipped with skipTest()
        entry = self._current.get(parent.id()) if parent is not None else None
        if entry is not None:
            entry[0].subtests.append({"id": test.id(), "description": test._subDescription(),
                                      "outcome": "skipped", "message": reason})
            return
        self._record(test, "skipped", reason=reason)

    def addExpectedFailure(self, test, err) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "expected_failure")

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected_success")

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        entry = self._current.get(test.id())
        if entry is not None:
            outcome = "passed" if err is None else (
                "failed" if issubclass(err[0], test.failureException) else "error")
            entry[0].subtests.append({"id": subtest.id(), "description": subtest._subDescription(),
                                      "outcome": outcome,
                                      "message": "" if err is None else str(err[1])})
            if err is not None:
                entry[0].outcome = outcome
                entry[0].message = str(err[1]).splitlines()[0] if str(err[1]) else ""
                entry[0].details = self._exc_info_to_string(err, test)


class RunCheck:
    """Stands for a check of the whole run (like unittest's fixture error holders)."""

    failureException = AssertionError

    def __init__(self, description: str) -> None:
        self.description = description

    def id(self) -> str:
        return self.description

    def shortDescription(self) -> None:
        return None

    def __str__(self) -> str:
        return self.description
