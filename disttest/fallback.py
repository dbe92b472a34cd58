"""What happens when a class's cluster cannot start.

The pool has already retried with backoff; what is left is the configured
fallback: ``fail`` (the class's tests error with the diagnosis), ``skip``
(they are skipped with the diagnosis as the reason), ``reduce`` (the largest
size that starts, not below the class's ``min_cluster_size``) or
``simulate`` (nodes run as threads of the controller). Every choice is
emitted as a ``fallback`` event, so the summary lists it.
"""
from __future__ import annotations

import unittest

from disttest.config import FALLBACKS as POLICIES
from disttest.errors import ClusterStartError, ConfigError
from disttest.requirements import class_size


def policy_for(session, cls: type) -> str:
    policy = getattr(cls, "fallback", None) or session.fallback or \
        session.config.effective_fallback
    if policy not in POLICIES:
        raise ConfigError.bad_value(f"test class {cls.__module__}.{cls.__qualname__}",
                                    "fallback", policy, " or ".join(POLICIES))
    return policy


def acquire(session, cls: type, requirement):
    """(cluster, the class's own size) for ``cls``, applying the fallback on failure."""
    size = class_size(cls, session.config, session.size_override)
    try:
        return session.pool.acquire(requirement), size
    except ClusterStartError as error:
        policy = policy_for(session, cls)
        name = f"{cls.__module__}.{cls.__qualname__}"
        # What the summary says when the policy could not help (the class then errors).
        detail = error.diagnosis.problem
        if policy == "reduce":
            floor = requirement.min_size or size
            for smaller in range(requirement.size - 1, floor - 1, -1):
                try:
                    cluster = session.pool.acquire(requirement.with_size(smaller))
                except ClusterStartError:
                    continue
                session.events.emit("fallback", cls=name, policy="reduce", error=error,
                                    detail=f"reduced from {requirement.size} to {smaller} nodes")
                return cluster, min(size, smaller)
            if floor >= requirement.size:
                why = ("min_cluster_size is not set" if requirement.min_size is None
                       else f"min_cluster_size is {floor}")
            else:
                why = f"no size down to {floor} nodes started either"
            detail = f"could not reduce ({why}): {detail}"
        if policy == "simulate" and not requirement.simulated:
            try:
                cluster = session.pool.acquire(requirement.as_simulated())
            except ClusterStartError as simulated_error:
                # e.g. the port range: simulated nodes need real ports too
                session.events.emit("fallback", cls=name, policy="simulate", error=error,
                                    detail="could not simulate either: "
                                           f"{simulated_error.diagnosis.problem}")
                raise simulated_error from None
            session.events.emit("fallback", cls=name, policy="simulate", error=error,
                                detail=f"ran on {requirement.size} simulated nodes: "
                                       f"{error.diagnosis.problem}")
            return cluster, size
        session.events.emit("fallback", cls=name, policy=policy, error=error, detail=detail)
        if policy == "skip":
            raise unittest.SkipTest("cluster could not start: " +
                                    error.diagnosis.render()) from None
        raise
