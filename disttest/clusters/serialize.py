"""Turning calls into bytes on the controller side.

Functions travel by reference (a pickle of an importable callable). Lambdas,
closures and other objects plain pickle refuses go through cloudpickle when
it is installed; otherwise the error says which object failed and how to
make it work.
"""
from __future__ import annotations

import pickle
from typing import Any

from disttest.clusters import protocol
from disttest.errors import SerializationError

try:  # optional extra: disttest[cloudpickle]
    import cloudpickle as _cloudpickle
except ImportError:  # pragma: no cover - depends on the environment
    _cloudpickle = None

_PLAIN_FAILURES = (pickle.PicklingError, AttributeError, TypeError)


def _describe(obj: Any) -> str:
    """"function 'f.<locals>.g'", "lambda in test_x", or the object's type."""
    kind = type(obj)
    name = getattr(obj, "__qualname__", None)
    if name and callable(obj):
        if "<lambda>" in name:
            owner = name.split(".<lambda>")[0].replace(".<locals>", "")
            return f"a lambda in {owner}" if owner != "<lambda>" else "a lambda"
        what = "function" if kind.__name__ == "function" else kind.__qualname__
        return f"{what} {name!r}"
    return f"an object of type {kind.__module__}.{kind.__qualname__}"


def _culprit(parts: dict[str, Any]) -> tuple[str, Any] | None:
    for label, obj in parts.items():
        try:
            pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return label, obj
    return None


def dumps_request(op: str, fn: Any, args: tuple, kwargs: dict) -> bytes:
    """The request ``op`` ("call" or "spawn") of ``fn(*args, **kwargs)``, as bytes."""
    message = protocol.request(op, fn, args, kwargs)
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except _PLAIN_FAILURES as plain_error:
        if _cloudpickle is not None:
            try:
                return _cloudpickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                error: Exception = exc
        else:
            error = plain_error
    parts = {"the function": fn}
    parts.update({f"argument {i + 1}": arg for i, arg in enumerate(args)})
    parts.update({f"keyword argument {k!r}": v for k, v in kwargs.items()})
    found = _culprit(parts) or ("the call", message)
    label, obj = found
    steps = []
    if _cloudpickle is None:
        steps.append("install the cloudpickle extra to send lambdas and closures: "
                     "pip install 'disttest[cloudpickle]'")
    steps.append("or send a function defined at the top level of an importable module")
    raise SerializationError(
        f"{label} ({_describe(obj)}) cannot be sent to a node: {error}",
        "calls travel to node processes as pickles; this object cannot be pickled"
        + ("" if _cloudpickle is not None else " without cloudpickle"),
        steps, kind="serialization")


def dumps(message: Any) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    return pickle.loads(data)
