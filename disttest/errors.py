"""The one tree of disttest exceptions, each carrying a :class:`Diagnosis`.

Every error tells the user three things: what went wrong (``problem``), the
likely reason (``cause``) and concrete steps that fix it (``steps``). Errors
keep working after a pickle round trip (they cross process boundaries between
the controller and nodes) and keep remote traceback text as a plain string.
"""
from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ms on nodes

if TYPE_CHECKING:  # node processes import this module: keep it light at run time
    from typing import Any, Iterable, Sequence

__all__ = [
    "Diagnosis",
    "DisttestError",
    "ConfigError",
    "ClusterStartError",
    "NodeCrashedError",
    "RemoteError",
    "PortRangeExhausted",
    "CallTimeoutError",
    "SerializationError",
    "NetworkModeError",
]


class Diagnosis:
    """What went wrong, why it probably did, and how to fix it.

    ``kind`` is a short stable key, used to print each problem once.
    """

    __slots__ = ("problem", "cause", "steps", "kind")

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (),
                 kind: str = "error") -> None:
        self.problem = problem
        self.cause = cause
        self.steps = tuple(steps)
        self.kind = kind

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Diagnosis) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.kind, self.problem, self.cause, self.steps))

    def __repr__(self) -> str:
        return f"Diagnosis({self.problem!r}, kind={self.kind!r})"

    def render(self, indent: str = "") -> str:
        lines = [indent + self.problem]
        if self.cause:
            lines.append(f"{indent}  cause: {self.cause}")
        for step in self.steps:
            lines.append(f"{indent}  fix:   {step}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "problem": self.problem, "cause": self.cause,
                "steps": list(self.steps)}


class DisttestError(Exception):
    """Base of every error disttest raises on purpose.

    ``problem``, ``cause`` and ``steps`` make its :class:`Diagnosis`; ``kind``
    overrides the class's stable key; ``node`` names the node it concerns, if
    any. Each subclass declares its own structured fields as keyword-only
    arguments, listed in ``FIELDS``; they survive pickling.
    """

    kind = "error"
    FIELDS: tuple = ("node",)

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (), *,
                 kind: str | None = None, node: str = "") -> None:
        self.diagnosis = Diagnosis(problem, cause, tuple(steps), kind or type(self).kind)
        self.node = node
        super().__init__(self.diagnosis.render())

    @property
    def fields(self) -> dict[str, Any]:
        """The structured fields, by name."""
        return {name: getattr(self, name) for name in type(self).FIELDS}

    def __reduce__(self):  # keep the structured fields across pickling
        d = self.diagnosis
        return (_rebuild, (type(self), d.problem, d.cause, tuple(d.steps), d.kind, self.fields))


def _rebuild(cls, problem, cause, steps, kind, fields):
    return cls(problem, cause, steps, kind=kind, **fields)


class ConfigError(DisttestError):
    """A configuration value, declaration or option is wrong.

    ``source`` names where the value came from (a file, a variable, an option
    or a test class), ``key`` the setting, ``value`` what was given and
    ``allowed`` what would have been accepted.
    """

    kind = "config"
    FIELDS = DisttestError.FIELDS + ("source", "key", "value", "allowed", "suggestion")

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (), *,
                 kind: str | None = None, node: str = "", source: str = "", key: str = "",
                 value: Any = None, allowed: Any = "", suggestion: str | None = None) -> None:
        self.source, self.key, self.value = source, key, value
        self.allowed, self.suggestion = allowed, suggestion
        super().__init__(problem, cause, steps, kind=kind, node=node)

    @classmethod
    def bad_value(cls, source: str, key: str, value: Any, allowed: str,
                  hint: str = "", cause: str = "") -> "ConfigError":
        """``key = value`` from ``source`` is wrong: say what is ``allowed`` (or ``hint``)."""
        problem = f"{source}: {key} = {value!r} is not allowed; {key} must be {allowed}"
        steps = [hint] if hint else [f"set {key} to {allowed} in {source}"]
        return cls(problem, cause, steps, source=source, key=key, value=value, allowed=allowed)

    @classmethod
    def unknown_arguments(cls, source: str, what: str, unknown: Iterable[str],
                          allowed: Iterable[str]) -> "ConfigError":
        """``source`` (a call) got keyword arguments it does not take: list the ``allowed``."""
        names, allowed = ", ".join(sorted(unknown)), sorted(allowed)
        return cls(f"{source} got unknown {what}(s) {names}",
                   steps=[f"use only: {', '.join(allowed)}"], source=source, key=names,
                   allowed=allowed)


class ClusterStartError(DisttestError):
    """A cluster (or one of its nodes) could not be started.

    ``log_tail`` is the end of the failed node's log, ``host`` the SSH host it
    was to run on.
    """

    kind = "cluster-start"
    FIELDS = DisttestError.FIELDS + ("log_tail", "host")

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (), *,
                 kind: str | None = None, node: str = "", log_tail: str = "",
                 host: str | None = None) -> None:
        self.log_tail, self.host = log_tail, host
        super().__init__(problem, cause, steps, kind=kind, node=node)


class NodeCrashedError(DisttestError):
    """A node process died while it was being used; ``log_tail`` is the end of its
    log, ``stopped_by`` the id of the earlier test that killed or terminated it."""

    kind = "node-crashed"
    FIELDS = DisttestError.FIELDS + ("log_tail", "stopped_by")

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (), *,
                 kind: str | None = None, node: str = "", log_tail: str = "",
                 stopped_by: str | None = None) -> None:
        self.log_tail, self.stopped_by = log_tail, stopped_by
        super().__init__(problem, cause, steps, kind=kind, node=node)


class RemoteError(DisttestError):
    """An exception raised by code running on a node.

    ``remote_type`` is the qualified name of the exception type on the node,
    ``remote_traceback`` the formatted traceback text from the node (starting
    at the user's code) and ``node_output`` what the node printed while it
    ran the call (its last lines).
    """

    kind = "remote"
    FIELDS = DisttestError.FIELDS + ("remote_type", "remote_traceback", "node_output",
                                     "remote_exception", "job")

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (), *,
                 kind: str | None = None, node: str = "", remote_type: str = "Exception",
                 remote_traceback: str = "", node_output: str = "",
                 remote_exception: BaseException | None = None, job: Any = None) -> None:
        self.remote_type, self.remote_traceback = remote_type, remote_traceback
        self.node_output, self.remote_exception, self.job = node_output, remote_exception, job
        super().__init__(problem, cause, steps, kind=kind, node=node)

    def __str__(self) -> str:
        where = f" on node {self.node}" if self.node else ""
        text = (f"{self.remote_type}{where}: {self.diagnosis.problem}\n\n"
                f"Remote traceback (most recent call last on the node):\n"
                f"{self.remote_traceback.rstrip()}")
        if self.node_output.strip():
            text += f"\n\nOutput of node {self.node} during the call:\n{self.node_output.rstrip()}"
        return text


class PortRangeExhausted(ClusterStartError):
    """Not enough free ports are left in the configured ``port_range``.

    ``needed`` ports were asked of ``port_range`` (low, high); ``holders``
    names who holds ports of the range, where that is known.
    """

    kind = "port-range-exhausted"
    FIELDS = ClusterStartError.FIELDS + ("needed", "port_range", "holders")

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (), *,
                 kind: str | None = None, node: str = "", log_tail: str = "",
                 host: str | None = None, needed: int = 0, port_range: Any = None,
                 holders: Any = None) -> None:
        self.needed, self.port_range, self.holders = needed, port_range, holders
        super().__init__(problem, cause, steps, kind=kind, node=node, log_tail=log_tail,
                         host=host)


class CallTimeoutError(DisttestError, TimeoutError):
    """A call into a node did not answer within its timeout.

    ``stacks`` are the node's threads running user code when it timed out
    (name, stack text), ``log_tail`` the end of the node's log.
    """

    kind = "call-timeout"
    FIELDS = DisttestError.FIELDS + ("stacks", "log_tail")

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (), *,
                 kind: str | None = None, node: str = "", stacks: Any = None,
                 log_tail: str = "") -> None:
        self.stacks, self.log_tail = stacks, log_tail
        super().__init__(problem, cause, steps, kind=kind, node=node)


class SerializationError(DisttestError, TypeError):
    """A function, argument or result could not be sent between processes."""

    kind = "serialization"


class NetworkModeError(DisttestError):
    """A network fault was asked of a cluster whose network mode cannot do it.

    ``remote_traceback`` is the traceback of the fault proxy when it stopped
    on an error of its own.
    """

    kind = "network-mode"
    FIELDS = DisttestError.FIELDS + ("remote_traceback",)

    def __init__(self, problem: str, cause: str = "", steps: Sequence[str] = (), *,
                 kind: str | None = None, node: str = "", remote_traceback: str = "") -> None:
        self.remote_traceback = remote_traceback
        super().__init__(problem, cause, steps, kind=kind, node=node)
