"""Session: the configuration, events and pool that cluster tests use right now.

Under ``python -m disttest`` the runner makes a session with its plan and
activates it for the run. Under any other runner (``python -m unittest``,
pytest, an IDE) the first cluster test makes a default session from the
project's configuration; its clusters are stopped at interpreter exit.
Either way a test class acquires through the same :class:`ClusterPool`.
"""
from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from collections import Counter
TYPE_CHECKING = False  # typing is for annotations only: a plain run skips its import
if TYPE_CHECKING:
    from typing import Iterator

from disttest import coverage_support
from disttest.events import EventBus
from disttest.requirements import Requirement, class_requirement


class Session:
    """What cluster tests in this process consult: config, pool, plan."""

    def __init__(self, config, events: EventBus | None = None, pool=None, *,
                 planned: dict[type, Requirement] | None = None,
                 skip_reason: str | None = None, size_override: int | None = None,
                 fallback: str | None = None, simulate: bool = False,
                 keep: bool = False) -> None:
        self.config = config
        self.events = events or EventBus()
        self._pool = pool
        self.planned = planned if planned is not None else {}
        self._remaining = Counter(req.key for req in self.planned.values())
        self.skip_reason = skip_reason
        self.size_override = size_override
        self.fallback = fallback
        self.simulate = simulate
        self.keep = keep  # clusters outlive the run: never stop them early
        self.forced_cluster = None
        self._slow_watch = None

    @property
    def slow_watch(self):
        """The watch that emits ``test_slow`` for long cluster tests (made on first use)."""
        if self._slow_watch is None:
            from disttest.watchdog import SlowTestWatch

            self._slow_watch = SlowTestWatch(
                self.events, float(getattr(self.config, "slow_test_notice", 0) or 0))
        return self._slow_watch

    @property
    def pool(self):
        """The session's ClusterPool, made on first use (plain suites never pay for it)."""
        if self._pool is None:
            from disttest.clusters.pool import ClusterPool

            self._pool = ClusterPool(self.config, self.events)
        return self._pool

    @property
    def pool_started(self) -> bool:
        """Whether anything asked for the pool (so there may be clusters to finish)."""
        return self._pool is not None

    def release(self, cls: type, cluster) -> None:
        """Give ``cls``'s cluster back; stop it when no planned class needs it again."""
        faults = [{k: v for k, v in fault.items() if k != "time"}
                  for fault in cluster.fault_history()]
        undeclared = {}
        if self.config.verbose_cluster_logs or self.config.json_report:
            from disttest.resources import undeclared_ports  # psutil: only when reported

            undeclared = undeclared_ports(cluster.nodes)
        self.events.emit("class_finished", cls=f"{cls.__module__}.{cls.__qualname__}",
                         cluster=cluster.id, nodes=list(cluster.nodes), faults=faults,
                         undeclared_ports=undeclared)
        self.pool.release(cluster)
        requirement = self.planned.get(cls)
        if requirement is None:
            return
        self._remaining[requirement.key] -= 1
        if self._remaining[requirement.key] <= 0 and not self.keep:
            self.pool.stop_idle(requirement.key)

    def expect(self, requirements: dict[type, Requirement]) -> None:
        """Plan more classes (a ``-j`` worker learns its classes item by item)."""
        for cls, requirement in requirements.items():
            self.planned[cls] = requirement
            self._remaining[requirement.key] += 1

    def requirement_for(self, cls: type) -> Requirement:
        """The requirement to acquire for ``cls``: planned, else read from it."""
        if cls in self.planned:
            return self.planned[cls]
        requirement = class_requirement(cls, self.config, self.size_override)
        return requirement.as_simulated() if self.simulate else requirement

    def skip_reason_for(self, cls: type) -> str | None:
        if self.skip_reason:
            return self.skip_reason
        return skip_reason(self.config)

    def shutdown(self) -> None:
        if self._slow_watch is not None:
            self._slow_watch.close()
        if self._pool is not None:
            self._pool.shutdown()

    def finish(self, keep_ttl: float = 0.0) -> None:
        """End of a run: keep (``keep_ttl`` > 0) or stop every cluster, then check
        that nothing of ours is left (leaks are reported as events)."""
        if self._pool is None:
            return
        if keep_ttl > 0:
            self._pool.keep(keep_ttl)
        self._pool.shutdown()
        self._pool.verify_cleanup()


def skip_reason(config, no_distributed: bool = False) -> str | None:
    """Why cluster tests get no cluster in this run, or None when they do."""
    if no_distributed:
        return "cluster tests are turned off (--no-distributed)"
    if not config.auto_cluster:
        return ("cluster tests are not given clusters: auto_cluster = false (manual mode); "
                "set auto_cluster = true, or start clusters in the tests (disttest.start_cluster, "
                "ClusterTestHelper)")
    return None


_current: Session | None = None
_lock = threading.Lock()


def current() -> Session:
    """The active session, making the default one on first use."""
    global _current
    with _lock:
        if _current is None:
            from disttest import this_node
            from disttest.config import load_config

            if this_node.inside_node():
                raise _started_on_node()

            _current = Session(load_config())
            atexit.register(_current.shutdown)
            _stop_on_sigterm(_current)
        return _current


def _started_on_node():
    from disttest.errors import DisttestError

    return DisttestError(
        "a cluster was asked for from inside a node",
        "nodes cannot start clusters; this usually means a script that starts a cluster "
        "at its top level was loaded on the node to find a function it sent (the script's "
        "functions live in its __main__ module, which the node imports)",
        ["put the code that starts clusters under: if __name__ == '__main__':",
         "or move the functions sent to nodes into a module of their own"],
        kind="cluster-on-node")


def peek() -> Session | None:
    """The active session, or None (never makes one)."""
    return _current


@contextlib.contextmanager
def activate(session: Session) -> Iterator[Session]:
    """Make ``session`` the active one for the duration of a run."""
    global _current
    with _lock:
        previous, _current = _current, session
    try:
        yield session
    finally:
        with _lock:
            _current = previous


def _stop_on_sigterm(session: Session) -> None:
    # A foreign runner killed with SIGTERM would skip atexit; stop the nodes first.
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    # coverage.py's handler (``[run] sigterm = true``) only saves its data and
    # ends the process: stop the nodes first, then let it do that.
    if previous is not signal.SIG_DFL and not coverage_support.is_coverage_handler(previous):
        return

    def handler(signum, frame):
        session.shutdown()
        if previous is not signal.SIG_DFL:
            signal.signal(signum, previous)
            previous(signum, frame)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, handler)
