"""The messages between the controller and its workers, and what they carry.

Every message is a tuple whose first item is one of the kinds below; the
controller's ``Controller._translate`` is the one place that turns them into
result calls and events, and an unknown kind is an error there. Test objects
and tracebacks do not cross processes (tracebacks cannot be pickled): a worker
sends a :class:`RemoteTest` that describes the test and a
:class:`RemoteException` that carries the formatted traceback text, as
pytest-xdist sends its reports.
"""
from __future__ import annotations

import unittest

__unittest = True

# worker -> controller
READY = "ready"          # (READY, pid)
TEST = "test"            # (TEST, result method name, RemoteTest, args tuple)
EVENT = "event"          # (EVENT, kind, data dict)
ITEM_DONE = "item_done"  # (ITEM_DONE, item number)
FINISHED = "finished"    # (FINISHED, interrupted: bool): clusters stopped, about to exit
HOLDS = "holds"          # (HOLDS, lock dir, [ports], [temp dirs]): to clean if it dies
# controller -> worker
RUN = "run"              # (RUN, item number, [(unit index, test indices or None), ...])
STOP = "stop"            # (STOP,): finish the current test, run nothing more
END = "end"              # (END,): no more items; stop the clusters and exit

# The result calls a worker forwards (unittest's result API, plus addDuration on 3.12+).
RESULT_CALLS = frozenset({
    "startTest", "stopTest", "addSuccess", "addFailure", "addError", "addSkip",
    "addExpectedFailure", "addUnexpectedSuccess", "addSubTest", "addDuration",
})


class ClusterRef:
    """What the reports need of the cluster a remote test ran on."""

    __slots__ = ("id", "simulated")

    def __init__(self, id: str, simulated: bool) -> None:
        self.id = id
        self.simulated = simulated


class RemoteTest:
    """Stands on the controller for a test (or subtest, or fixture) run by a worker."""

    __slots__ = ("_id", "_str", "_short", "description", "classname", "name", "cluster",
                 "sub_description", "test_case", "duration_s")
    failureException = AssertionError  # a worker sends failures as AssertionError

    def __init__(self, id: str, text: str, short: str | None, description: str,
                 classname: str, name: str, cluster: ClusterRef | None = None,
                 sub_description: str = "", test_case: RemoteTest | None = None) -> None:
        self._id = id
        self._str = text
        self._short = short
        self.description = description
        self.classname = classname
        self.name = name
        self.cluster = cluster
        self.sub_description = sub_description
        self.test_case = test_case  # the parent test of a subtest
        self.duration_s: float | None = None

    def id(self) -> str:
        return self._id

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"<RemoteTest {self._id}>"

    def shortDescription(self) -> str | None:
        return self._short

    def _subDescription(self) -> str:
        return self.sub_description

    def countTestCases(self) -> int:
        return 1


class RemoteException(Exception):
    """An exception raised in a worker: its type name, message and formatted traceback."""

    def __init__(self, type_name: str, message: str, text: str) -> None:
        super().__init__(type_name, message, text)
        self.type_name = type_name
        self.message = message
        self.text = text

    def __str__(self) -> str:
        return self.message


class NodeLogs:
    """A node of a class's cluster as the controller's failure-log report needs
    it (CI only): its name and the tail of its log, read by the worker."""

    __slots__ = ("name", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text

    def logs(self, tail: int | None = None) -> str:
        lines = self.text.splitlines(keepends=True)
        return "".join(lines[-tail:] if tail else lines)


def as_subtest(remote: RemoteTest):
    """The controller's stand-in for a remote subtest: a real ``_SubTest`` (whose
    parent is the remote test), because unittest's text result formats subtests
    by that class."""
    return _RemoteSubTest(remote)


class _RemoteSubTest(unittest.case._SubTest):
    def __init__(self, remote: RemoteTest) -> None:
        super().__init__(remote.test_case, remote.sub_description, {})
        self.remote = remote

    def _subDescription(self) -> str:
        return self.remote.sub_description


def exc_info(error: RemoteException, failure: bool) -> tuple:
    """An ``exc_info``-shaped triple for unittest's result API: failures are
    AssertionError (unittest counts them in ``failures``), the rest errors."""
    return (AssertionError if failure else RemoteException, error, None)


def describe(test, description: str, cluster: ClusterRef | None = None,
             parent: RemoteTest | None = None) -> RemoteTest:
    """A :class:`RemoteTest` for ``test`` as the worker's result sees it."""
    cls = type(test)
    if isinstance(test, unittest.TestCase) and hasattr(test, "_testMethodName") \
            and parent is None:
        classname, name = f"{cls.__module__}.{cls.__qualname__}", test._testMethodName
    else:
        classname = name = str(test)
    short = test.shortDescription() if hasattr(test, "shortDescription") else None
    sub = test._subDescription() if parent is not None else ""
    return RemoteTest(test.id(), str(test), short, description, classname, name, cluster,
                      sub, parent)
