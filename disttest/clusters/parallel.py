"""Doing one thing on many nodes at once."""
from __future__ import annotations

import threading
from typing import Any, Callable


def in_parallel(fn: Callable[[Any], Any], nodes: list) -> list[Any]:
    """``fn(node)`` for every node at once, each in a thread; the first error is
    raised after all have ended."""
    if len(nodes) <= 1:
        return [fn(node) for node in nodes]
    results: list[Any] = [None] * len(nodes)
    errors: list[BaseException] = []

    def run(i: int, node: Any) -> None:
        try:
            results[i] = fn(node)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, n), name="disttest-pool", daemon=True)
               for i, n in enumerate(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
