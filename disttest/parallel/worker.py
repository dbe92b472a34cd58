"""A ``-j`` worker: a forked copy of the runner that runs the items it is handed.

The worker has the controller's loaded plan (it is forked after planning),
its own session and ``ClusterPool``, and no output of its own: every result
call and cluster event goes back to the controller as a message. Each item
runs as one top-level suite with a fresh result, so class and module fixtures
run exactly as under unittest. The worker lives in its own process group (a
terminal's Ctrl-C goes to the controller, which decides), reads the
controller's messages on a thread, and treats the end of that connection as
SIGTERM: a controller that dies, even by SIGKILL, leaves no worker and so no
cluster behind.
"""
from __future__ import annotations

import os
import pickle
import queue
import signal
import sys
import threading
import time
import unittest

from disttest.parallel import messages as m
from disttest.result import DistributedTestResult, cluster_of

__unittest = True


class Channel:
    """The worker's end of its connection: sends from any thread, one at a time."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.broken = False

    def send(self, *message) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                self.conn.send(message)
            except (OSError, EOFError):
                self.broken = True  # the controller is gone; the reader stops the worker


class _NullStream:
    """The worker writes nothing itself: the controller writes the progress."""

    def write(self, text: str) -> None:
        pass

    def writeln(self, text: str = "") -> None:
        pass

    def flush(self) -> None:
        pass


class ForwardingResult(DistributedTestResult):
    """Formats like the controller's result would, and forwards every call."""

    def __init__(self, channel: Channel, descriptions: bool, verbosity: int, buffer: bool,
                 tb_locals: bool, failfast: bool) -> None:
        super().__init__(_NullStream(), descriptions, verbosity)
        self.buffer, self.tb_locals, self.failfast = buffer, tb_locals, failfast
        self.channel = channel
        self._remote: dict[str, m.RemoteTest] = {}
        self._started: dict[str, float] = {}

    def remote(self, test) -> m.RemoteTest:
        known = self._remote.get(test.id())
        if known is not None:
            return known
        cluster = cluster_of(test)
        ref = None if cluster is None else m.ClusterRef(cluster.id, bool(cluster.simulated))
        return m.describe(test, self.getDescription(test), ref)

    def _send(self, call: str, test, *args) -> None:
        self.channel.send(m.TEST, call, self.remote(test), args)

    @staticmethod
    def _error(err, text: str) -> m.RemoteException:
        message = str(err[1]) if err[1] is not None else ""
        return m.RemoteException(err[0].__name__, message, text)

    def startTest(self, test) -> None:
        super().startTest(test)
        self._remote[test.id()] = self.remote(test)  # described once, cluster included
        self._started[test.id()] = time.perf_counter()
        self._send("startTest", test)

    def stopTest(self, test) -> None:
        super().stopTest(test)
        remote = self._remote.pop(test.id(), None) or self.remote(test)
        started = self._started.pop(test.id(), None)
        remote.duration_s = None if started is None else time.perf_counter() - started
        self.channel.send(m.TEST, "stopTest", remote, ())

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        self._send("addSuccess", test)

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._send("addFailure", test, self._error(err, self.failures[-1][1]))

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._send("addError", test, self._error(err, self.errors[-1][1]))

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        parent = getattr(test, "test_case", None)  # a subtest skipped with skipTest()
        if parent is not None:
            sub = m.describe(test, self.getDescription(test), parent=self.remote(parent))
            self.channel.send(m.TEST, "addSkip", sub, (reason,))
        else:
            self._send("addSkip", test, reason)

    def addExpectedFailure(self, test, err) -> None:
        super().addExpectedFailure(test, err)
        self._send("addExpectedFailure", test, self._error(err, self.expectedFailures[-1][1]))

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        self._send("addUnexpectedSuccess", test)

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        parent = self.remote(test)
        sub = m.describe(subtest, self.getDescription(subtest), parent=parent)
        payload = failure = None
        if err is not None:
            failure = issubclass(err[0], test.failureException)
            text = (self.failures if failure else self.errors)[-1][1]
            payload = self._error(err, text)
        self.channel.send(m.TEST, "addSubTest", parent, (sub, payload, failure))

    def addDuration(self, test, elapsed) -> None:  # Python 3.12+ calls it
        parent = getattr(super(), "addDuration", None)
        if parent is not None:
            parent(test, elapsed)
        self._send("addDuration", test, elapsed)


def _picklable(data: dict) -> dict:
    """Event data as it can cross: unpicklable values become names or text."""
    try:
        pickle.dumps(data)
        return data
    except Exception:
        pass
    clean = {}
    for key, value in data.items():
        try:
            pickle.dumps(value)
            clean[key] = value
        except Exception:
            if isinstance(value, (list, tuple)):
                clean[key] = [getattr(v, "name", None) or str(v) for v in value]
            else:
                clean[key] = str(value)
    return clean


def _tail(node, lines: int = 200) -> str:
    try:
        return node.logs(tail=lines)
    except Exception as error:  # a node whose log cannot be read: say so in its place
        return f"(log not readable: {error})"


class Worker:
    """Serves one controller connection until told to end (or orphaned)."""

    def __init__(self, number: int, conn, units: list, settings: dict) -> None:
        self.number = number
        self.channel = Channel(conn)
        self.conn = conn
        self.units = units
        self.settings = settings
        self.inbox: queue.Queue = queue.Queue()
        self.stopped = False
        self.ending = False
        self.result: ForwardingResult | None = None
        self.pool = None

    # -- the controller's messages, read on a thread ------------------------------------
    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                if not self.ending:  # orphaned: stop as SIGTERM would, clusters included
                    os.kill(os.getpid(), signal.SIGTERM)
                return
            if message[0] == m.STOP:
                self.stopped = True
                if self.result is not None:
                    self.result.stop()
            self.inbox.put(message)

    def _forward(self, event) -> None:
        if event.kind == "rpc" and not self.settings["debug"]:
            return
        data = event.data
        if event.kind == "class_finished" and self.settings["config"].ci:
            # CI prints a failing class's node logs: read them here, while they exist.
            data = dict(data, nodes=[m.NodeLogs(n.name, _tail(n)) for n in data["nodes"]])
        self.channel.send(m.EVENT, event.kind, _picklable(data))
        if event.kind in ("cluster_started", "cluster_grown") and self.pool is not None:
            # What the controller removes should this worker die without stopping them.
            allocator = self.pool.allocator
            self.channel.send(m.HOLDS, str(allocator.lock_dir), sorted(allocator.held),
                              sorted(str(d) for d in self.pool.tmpdirs))

    # -- running ------------------------------------------------------------------------
    def serve(self) -> int:
        from disttest import session as _session
        from disttest.clusters.pool import ClusterPool
        from disttest.events import EventBus
        from disttest.requirements import Requirement

        settings, options = self.settings, self.settings["options"]
        events = EventBus()
        events.subscribe(self._forward)
        if options.html_report or settings["config"].html_report:
            # Only this process can read its nodes' logs: each test's window goes
            # to the controller's HTML report as a test_logs event.
            from disttest.report.html import TimelineEvents

            events.subscribe(TimelineEvents(on_logs=lambda test, logs: events.emit(
                "test_logs", test=test, logs=logs)).on_event)
        # Cluster ids name their worker, so the run's reports tell them apart.
        pool = self.pool = ClusterPool(settings["config"], events,
                                       name_prefix=f"w{self.number}-")
        session = _session.Session(settings["config"], events, pool, planned={},
                                   size_override=options.cluster_size,
                                   fallback=options.fallback, simulate=options.simulate,
                                   keep=settings["keep_ttl"] > 0)
        threading.Thread(target=self._read, name="disttest-worker-reader", daemon=True).start()
        interrupted = False
        with _session.activate(session):
            try:
                self.channel.send(m.READY, os.getpid())
                if options.force_cluster:
                    config = settings["config"]
                    session.forced_cluster = session.pool.acquire(
                        Requirement(options.cluster_size or config.default_cluster_size))
                while True:
                    message = self.inbox.get()
                    if message[0] == m.END:
                        break
                    if message[0] == m.RUN:
                        self._run_item(session, message[2])
                        self.channel.send(m.ITEM_DONE, message[1])
            except KeyboardInterrupt:  # SIGINT or SIGTERM from the controller
                interrupted = True
            finally:
                self.ending = True
                try:
                    session.finish(settings["keep_ttl"])
                finally:
                    self.channel.send(m.FINISHED, interrupted)
        return 1 if interrupted else 0

    def _run_item(self, session, parts: list) -> None:
        tests, expected = [], {}
        requirements = self.settings["requirements"]
        for unit_index, indices in parts:
            unit = self.units[unit_index]
            tests.extend(unit.tests if indices is None else [unit.tests[i] for i in indices])
            expected.update({c: requirements[c] for c in unit.classes if c in requirements})
            if indices is None:
                unit.tests = []  # the suite below holds them until each has run
        session.expect(expected)
        result = ForwardingResult(self.channel, self.settings["descriptions"],
                                  self.settings["verbosity"],
                                  self.settings["buffer"], self.settings["tb_locals"],
                                  self.settings["failfast"])
        self.result = result
        if self.stopped:
            result.stop()
        suite = unittest.TestSuite(tests)
        del tests
        suite.run(result)  # one top-level run: class and module fixtures as under unittest
        self.result = None


def serve(number: int, conn, units: list, settings: dict, close_fds: list) -> None:
    """The forked child's whole life; never returns."""
    status = 70  # EX_SOFTWARE, unless the worker ends as it should
    try:
        for fd in close_fds:  # the other workers' connections: their EOF must mean theirs
            try:
                os.close(fd)
            except OSError:
                pass
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from disttest.interrupts import RunnerTerminated

        def terminated(signum, frame):
            raise RunnerTerminated(signum)

        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), terminated)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        status = Worker(number, conn, units, settings).serve()
    except BaseException:  # noqa: BLE001 - the child must never return into the controller
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)
