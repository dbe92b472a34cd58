"""Clusters by hand: ``start_cluster``, ``cluster()`` and ``ClusterTestHelper``.

For code that manages clusters itself (scripts, plain ``TestCase`` classes,
suites being migrated). These go through the same pool as everything else,
so ports never collide with automatic clusters and everything is stopped at
the end of the run at the latest.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from disttest import session as _session
from disttest.errors import ConfigError, DisttestError
from disttest.requirements import (DEFAULT_PORTS, Requirement, check_env, check_network,
                                   check_ports, check_size)

_OPTIONS = {"node_ports", "node_env", "network", "reuse"}


def _requirement(size: int | None, options: dict[str, Any], config) -> Requirement:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ConfigError.unknown_arguments("start_cluster()", "cluster option", unknown,
                                            _OPTIONS)
    where = "start_cluster()"
    size = config.default_cluster_size if size is None else size
    return Requirement(
        size=check_size(size, where, "size", config.max_cluster_size),
        ports=check_ports(options.get("node_ports", DEFAULT_PORTS), where),
        env=check_env(options.get("node_env", {}), where),
        network=check_network(options.get("network", "direct"), where),
        # A manual cluster is its caller's alone unless it allows sharing.
        fresh=not options.get("reuse", False))


def start_cluster(size: int | None = None, **options: Any):
    """Start (or, with ``reuse=True``, borrow) a cluster; stop it with ``cluster.stop()``.

    Options: ``node_ports``, ``node_env``, ``network``, ``reuse``.
    """
    session = _session.current()
    return session.pool.acquire(_requirement(size, options, session.config))


@contextlib.contextmanager
def cluster(size: int | None = None, **options: Any) -> Iterator:
    """``with disttest.cluster(3) as c:`` — a cluster for the block, stopped after it."""
    c = start_cluster(size, **options)
    try:
        yield c
    finally:
        _session.current().pool.release(c)


def current_cluster():
    """The run's default cluster started by ``--force-cluster``."""
    active = _session.peek()
    forced = active.forced_cluster if active else None
    if forced is None:
        raise DisttestError("there is no current cluster",
                            "disttest.current_cluster() returns the cluster that "
                            "python -m disttest --force-cluster starts for plain tests",
                            ["run with: python -m disttest --force-cluster",
                             "or start one yourself: disttest.start_cluster(3)"],
                            kind="no-current-cluster")
    return forced


class ClusterTestHelper:
    """Start and stop clusters by hand, from any ``setUp``/``setUpClass``.

    Usable as a mixin of a ``unittest.TestCase`` or as a plain object; every
    cluster it started and did not stop is stopped by ``stop_all_clusters()``
    and, at the latest, when the run ends.
    """

    def _started(self) -> list:
        started = self.__dict__.get("_disttest_started")
        if started is None:
            started = self.__dict__["_disttest_started"] = []
        return started

    def start_test_cluster(self, n: int | None = None, **options: Any):
        """Start a cluster of ``n`` nodes owned by this helper (options as for ``start_cluster``)."""
        if not isinstance(self, ClusterTestHelper):
            # cls.start_test_cluster(2) in a mixin's setUpClass: 2 became self.
            raise ConfigError(
                "start_test_cluster() was called on a class, not on a helper",
                "ClusterTestHelper methods are instance methods: in setUpClass there is no "
                "instance of the test class yet",
                ["in setUpClass, use a helper object: cls.helper = disttest.ClusterTestHelper(); "
                 "cls.cluster = cls.helper.start_test_cluster(3)",
                 "or start the cluster in setUp: self.start_test_cluster(3)"],
                source="ClusterTestHelper.start_test_cluster()")
        c = start_cluster(n, **options)
        self._started().append(c)
        return c

    def stop_test_cluster(self, cluster) -> None:
        """Stop (or give back) a cluster this helper started."""
        if cluster in self._started():
            self._started().remove(cluster)
        _session.current().pool.release(cluster)

    def stop_all_clusters(self) -> None:
        """Stop every cluster this helper started and did not stop yet."""
        for c in list(self._started()):
            self.stop_test_cluster(c)

    def cluster_nodes(self) -> list:
        """Nodes of the run's automatic cluster, else of the last one started here."""
        active = _session.peek()
        if active is not None and active.forced_cluster is not None:
            return list(active.forced_cluster.nodes)
        if self._started():
            return list(self._started()[-1].nodes)
        raise DisttestError("no cluster to take nodes from",
                            steps=["start one first: self.start_test_cluster(3)"],
                            kind="no-cluster")

    def wait_for_cluster(self, n: int, timeout: float = 30.0) -> list:
        """Wait until a cluster with at least ``n`` healthy nodes is there; its nodes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                nodes = self.cluster_nodes()
            except DisttestError:
                nodes = []
            healthy = [node for node in nodes if _answers(node)]
            if len(healthy) >= n:
                return healthy[:n]
            if time.monotonic() >= deadline:
                raise DisttestError(f"no cluster with {n} healthy nodes within {timeout:g}s",
                                    f"found {len(healthy)} healthy of {len(nodes)}",
                                    kind="unhealthy")
            time.sleep(0.05)


def _answers(node) -> bool:
    try:
        node.ping(timeout=2.0)
        return True
    except Exception:
        return False
