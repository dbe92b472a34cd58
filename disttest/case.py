"""DistributedTestCase, wait_until and @distributed, which opts a plain TestCase in.

A class acquires its cluster in ``setUpClass`` from the active session's pool
and gives it back in ``tearDownClass``. Under ``python -m disttest`` the
runner has planned the order so the pool can lend one cluster to many
classes; under any other runner the same code still works, it just cannot
plan.
"""
from __future__ import annotations

import contextlib
import os
import time
import unittest
from typing import Any, Callable, Iterator

from disttest import session as _session
from disttest.errors import ConfigError, DisttestError

__unittest = True  # hide these frames from failure tracebacks, as unittest does


class _ClassOrInstanceProperty(property):
    """A read-only property that also answers on the class (``cls.nodes``)."""

    def __get__(self, obj, owner=None):
        if obj is None and owner.__dict__.get("cluster") is None:
            # Tools that inspect classes (getattr over dir()) expect AttributeError.
            raise AttributeError(f"{owner.__qualname__}.nodes exists while the class holds "
                                 "its cluster (from setUpClass to tearDownClass)")
        return self.fget(owner if obj is None else obj)


class _NodeLifecycle:
    """Runs a class's ``setUpNode``/``tearDownNode`` as its nodes come and go."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.set_up: set[int] = set()  # id() of the nodes whose current process is set up

    def node_started(self, node) -> None:
        self.set_up.discard(id(node))
        self.cls.setUpNode(node)
        self.set_up.add(id(node))

    def node_stopping(self, node) -> None:
        if id(node) in self.set_up:
            self.set_up.discard(id(node))
            self.cls.tearDownNode(node)


class DistributedTestCase(unittest.TestCase):
    """A TestCase whose class gets a live cluster of ``cluster_size`` nodes.

    Override ``setUpClass``/``tearDownClass`` only with ``super()`` calls; put
    cluster preparation in ``setUpCluster``/``tearDownCluster``, and what every
    node runs (again after a restart) in ``setUpNode``/``tearDownNode``.
    """

    cluster_size: int | None = None      # None: the configured default_cluster_size
    min_cluster_size: int | None = None  # the smallest size the "reduce" fallback may use
    node_ports: tuple[str, ...] = ("app",)
    node_env: dict[str, str] = {}
    tags: frozenset[str] | set[str] = frozenset()
    fresh_cluster: bool = False
    network: str = "direct"
    fallback: str | None = None
    preload: tuple[str, ...] = ()  # imported once by the node template (node_start)
    cluster = None  # set on the class while its tests run

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        _acquire_cluster(cls)
        hook = "setUpNode"
        try:
            lifecycle = _NodeLifecycle(cls)
            for node in cls._disttest_lent.nodes:
                node.lifecycle = lifecycle
                lifecycle.node_started(node)
            hook = "setUpCluster"
            cls.setUpCluster()
        except BaseException as exc:
            _setup_failed(cls, exc, hook)
            _release_cluster(cls)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            if cls.__dict__.get("cluster") is not None:
                try:
                    cls.tearDownCluster()
                finally:
                    _stop_nodes(cls)
        finally:
            _release_cluster(cls)
            super().tearDownClass()

    @classmethod
    def setUpCluster(cls) -> None:
        """Prepare the cluster once for the class (it is healthy when called)."""

    @classmethod
    def tearDownCluster(cls) -> None:
        """Undo ``setUpCluster``; the node reset undoes the rest."""

    @classmethod
    def setUpNode(cls, node) -> None:
        """Prepare one node; runs every time a node comes up for this class.

        Before ``setUpCluster`` on every node the class may use (in node
        order), and again on a node after ``node.restart()``, so a service
        started here survives restarts.
        """

    @classmethod
    def tearDownNode(cls, node) -> None:
        """Undo ``setUpNode`` on a node that still runs, before disttest stops it.

        After ``tearDownCluster`` on every running node, and in ``node.restart()``
        before the old process is killed. A node the test killed gets none.
        """

    # -- per test --------------------------------------------------------------
    def run(self, result=None):
        # A method that asked for its own size sees a cluster of that size.
        lent = type(self).__dict__.get("_disttest_lent")
        size = getattr(getattr(self, self._testMethodName, None), "__disttest_cluster_size__", None)
        if lent is not None and size:
            self.cluster = lent.view(min(size, len(lent)))
        if lent is None:
            return super().run(result)
        self.addCleanup(_report_spawn_failures, lent)  # the last cleanup to run
        for node in lent.nodes:
            node.current_test = self.id()  # so an error can name the test that stopped it
        session = _session.current()
        # For the reports: when the test ran, where each node's log stood, what it broke.
        session.events.emit("test_started", test=self.id(), cluster=lent.id,
                            logs=_log_marks(lent.nodes))
        started = time.monotonic()
        try:
            with session.slow_watch.watching(self.id(), lent.nodes):
                return super().run(result)
        finally:
            session.events.emit("test_finished", test=self.id(), cluster=lent.id,
                                logs=_log_marks(lent.nodes),
                                faults=[f for f in lent.fault_history()
                                        if f.get("time", started) >= started])

    @_ClassOrInstanceProperty
    def nodes(self) -> list:
        """The nodes this test asked for (its method's size, else the class's).

        ``cls.nodes`` in a class-level hook is the class's nodes.
        """
        return DistributedTestCase.cluster_nodes(self)

    def cluster_nodes(self) -> list:
        """The nodes this test asked for, as a list (same as ``self.nodes``)."""
        if self.cluster is None:
            cls = self if isinstance(self, type) else type(self)
            raise DisttestError(f"{cls.__qualname__} has no cluster",
                                "setUpClass did not run or did not call super().setUpClass()",
                                ["call super().setUpClass() in an overriding setUpClass"],
                                kind="no-cluster")
        return list(self.cluster.nodes)

    @contextlib.contextmanager
    def with_cluster_size(self, n: int) -> Iterator[list]:
        """Yield the first ``n`` nodes, or skip the test when the cluster is smaller."""
        lent = type(self).__dict__.get("_disttest_lent")
        nodes = list(lent.nodes) if lent is not None else []
        if len(nodes) < n:
            raise unittest.SkipTest(f"needs {n} nodes, the cluster has {len(nodes)}")
        yield nodes[:n]

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0,
                   interval: float = 0.05, message: str | None = None) -> Any:
        """Poll ``predicate`` until it returns a true value; fail the test after ``timeout``.

        See :func:`disttest.wait_until`, which this is (usable in class hooks too).
        """
        try:
            return wait_until(predicate, timeout, interval, message)
        except AssertionError as error:
            failure = self.failureException(str(error))
        # Raised outside the handler: one message, not "During handling of..."
        raise failure

    def history(self) -> Any:
        """A new :class:`disttest.History` named after this test, for its clients to record into."""
        from disttest.history.recorder import History

        return History(meta={"test": self.id()})

    def assertLinearizable(self, history: Any, model: Any, timeout: float | None = 60.0,
                           msg: str | None = None) -> Any:
        """Fail unless ``history`` is linearizable against ``model``; return the CheckResult.

        The failure message shows each illegal key's window as a timeline and
        the nemesis seed; the history is saved as JSON and HTML
        (see :func:`disttest.assert_linearizable`).
        """
        from disttest.history.assertions import NonLinearizableError, assert_linearizable

        try:
            return assert_linearizable(history, model, timeout=timeout, name=self.id())
        except NonLinearizableError as error:
            raise self.failureException(self._formatMessage(msg, str(error))) from None

    def assertClusterHealthy(self, msg: str | None = None) -> None:
        """Fail unless every node of the class's cluster is alive and answering."""
        cluster = type(self).cluster
        problems = cluster.unhealthy() if cluster is not None else {"cluster": "none"}
        if problems:
            detail = "; ".join(f"{name}: {why}" for name, why in problems.items())
            self.fail(self._formatMessage(msg, f"cluster is not healthy: {detail}"))


def _report_spawn_failures(cluster) -> None:
    """Fail the test that was running when spawned jobs raised (see writing-tests.md)."""
    from disttest.errors import RemoteError

    failures = [error for node in cluster.nodes for error in node.spawn_failures()]
    if len(failures) == 1:
        raise failures[0]
    if failures:
        first = failures[0]
        raise RemoteError(
            f"{len(failures)} spawned jobs failed during this test: "
            + "; ".join(f"{e.job} on {e.node}" for e in failures),
            first.diagnosis.cause, first.diagnosis.steps, remote_type=first.remote_type,
            node=", ".join(sorted({e.node for e in failures})), kind="spawn-failed",
            remote_traceback="\n".join(f"[{e.node}] {e.diagnosis.problem}\n{e.remote_traceback}"
                                       for e in failures))


def _acquire_cluster(cls: type) -> None:
    session = _session.current()
    reason = session.skip_reason_for(cls)
    if reason:
        raise unittest.SkipTest(reason)
    from disttest.fallback import acquire

    try:
        requirement = session.requirement_for(cls)
        cluster, base_size = acquire(session, cls, requirement)
    except DisttestError as error:
        # The diagnosis says everything; disttest's own frames would only hide it.
        raise error.with_traceback(None) from None
    cls._disttest_lent = cluster  # every node lent, for methods that asked for more
    cls.cluster = cluster.view(min(base_size, len(cluster)))
    if cluster.simulated and getattr(cls, "__disttest_requires_real__", False):
        _release_cluster(cls)
        raise unittest.SkipTest("needs real node processes; the cluster is simulated")


def _setup_failed(cls: type, exc: BaseException, hook: str = "setUpCluster") -> None:
    """Tell the run once, with the node logs, why setUpNode or setUpCluster failed."""
    from disttest.errors import Diagnosis

    cluster = cls.__dict__.get("_disttest_lent")
    tails = []
    for node in (cluster.nodes if cluster is not None else []):
        tail = node.logs(tail=5).strip()
        if tail:
            tails.append(f"{node.name}: " + tail.replace("\n", "\n    "))
    diagnosis = Diagnosis(
        f"{hook} of {cls.__module__}.{cls.__qualname__} failed: "
        f"{type(exc).__name__}: {exc}".splitlines()[0],
        "the class's tests did not run; the cluster is reset before anyone reuses it"
        + ("\nnode logs end with:\n" + "\n".join(tails) if tails else ""),
        ["see the error of setUpClass for the traceback"], kind="setup-cluster")
    _session.current().events.emit("diagnosis", diagnosis=diagnosis)


def _stop_nodes(cls: type) -> None:
    """``tearDownNode`` on every running node of the class (last node first)."""
    cluster = cls.__dict__.get("_disttest_lent")
    first_error = None
    for node in reversed(cluster.nodes if cluster is not None else []):
        lifecycle = node.lifecycle
        node.lifecycle = None
        if lifecycle is not None and node.alive and not node.paused:
            try:
                lifecycle.node_stopping(node)
            except BaseException as exc:
                first_error = first_error or exc
    if first_error is not None:
        raise first_error


def _release_cluster(cls: type) -> None:
    cluster = cls.__dict__.get("_disttest_lent")
    if cluster is None:
        return
    for node in cluster.nodes:
        node.lifecycle = None
    cls.cluster = cls._disttest_lent = None
    _session.current().release(cls, cluster)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               message: str | None = None) -> Any:
    """Poll ``predicate`` until it returns a true value, and return that value.

    Exceptions raised by the predicate count as "not yet"; the last one (or the
    last value) is in the AssertionError raised when ``timeout`` runs out. In
    CI the timeout is multiplied by ``timeout_multiplier``.
    """
    active = _session.peek()  # never makes a session: this may run on a node
    if active is not None and getattr(active.config, "ci", False):
        timeout *= getattr(active.config, "timeout_multiplier", 1.0)
    deadline = time.monotonic() + timeout
    last_value, last_error = None, None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
            last_error = None
        except Exception as exc:  # "not yet"; reported if time runs out
            last_error = exc
        if time.monotonic() >= deadline:
            name = getattr(predicate, "__qualname__", repr(predicate))
            detail = (f"last error: {type(last_error).__name__}: {last_error}"
                      if last_error else f"last value: {last_value!r}")
            raise AssertionError(f"{message or name + ' never became true'} within "
                                 f"{timeout:g}s ({detail})")
        time.sleep(interval)


# -- opting a plain TestCase in (the other decorators are in decorators.py) --------
def distributed(cls: type | None = None, **declaration: Any):
    """Opt a plain ``unittest.TestCase`` class in without changing its base.

    ``@disttest.distributed(cluster_size=3, node_ports=("app",))`` returns a
    class that behaves like the original and also gets a cluster.
    """
    allowed = {"cluster_size", "min_cluster_size", "node_ports", "node_env", "tags",
               "fresh_cluster", "network", "fallback", "preload"}
    unknown = set(declaration) - allowed
    if unknown:
        raise ConfigError.unknown_arguments("disttest.distributed()", "argument", unknown, allowed)

    def decorate(target: type) -> type:
        if not (isinstance(target, type) and issubclass(target, unittest.TestCase)):
            raise ConfigError(f"@disttest.distributed decorates TestCase classes, "
                              f"not {target!r}", source="@disttest.distributed",
                              value=target, allowed="a unittest.TestCase subclass")
        if issubclass(target, DistributedTestCase):
            for key, value in declaration.items():
                setattr(target, key, value)
            return target
        namespace = {"__module__": target.__module__, "__qualname__": target.__qualname__,
                     "__doc__": target.__doc__, **declaration}
        return type(target.__name__, (target, DistributedTestCase), namespace)

    return decorate(cls) if cls is not None else decorate


def _log_marks(nodes) -> dict:
    """How far each node's log file is written now: {node name: bytes}."""
    marks = {}
    for node in nodes:
        path = getattr(node, "log_path", None)
        try:
            marks[node.name] = os.path.getsize(path) if path is not None else 0
        except OSError:
            pass
    return marks
