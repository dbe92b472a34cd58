"""``preload = "auto"``: the node template's preload list, learned from earlier runs.

Where ``auto`` stands in a ``preload`` list (the setting, or a class's
attribute), the template imports what nodes of earlier runs imported. The
list is kept in the project's durations history (disttest/durations.py),
one entry per interpreter::

    "preload": {"/usr/bin/python3.11": {"modules": ["json", "tornado.ioloop"],
                                        "refused": {"noisy": "started threads (poller)"}}}

* Learning: before a cluster stops, each of its live local nodes says which
  modules it imported that a template may preload (the ``imports`` request;
  what qualifies is decided node-side, disttest/agent_imports.py: no
  ``__main__``, nothing of disttest, not the project's own code). The run
  adds them to the entry when the pool shuts down. The list only grows, and
  is kept short by dropping a package that a submodule also names (importing
  ``a.b`` imports ``a``).
* Forgetting: a learned module that starts a thread or leaves a
  descriptor open in the template is moved to ``refused`` with the reason,
  is never learned again, and the template is started again without it at
  once: neither this run nor a later one falls back to spawning for it. A
  learned module that no longer imports (uninstalled, renamed) is left out
  by the template itself and dropped from the list; it is learned again if
  nodes import it again. Modules named in the list itself are the user's
  choice and are never dropped.
* Each run reads the entry once (a file of the wrong shape is set aside by
  the durations reader, never a crash), so every template of a run preloads
  the same list, and writes it back merged with what another run may have
  written meanwhile (under the history's lock: ``-j`` workers ending
  together take turns, and none loses what another added).
"""
from __future__ import annotations

import os
import threading

from disttest.durations import MAX_MODULES
from disttest.settings import is_module_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable

AUTO = "auto"


def leaves(names: Iterable[str]) -> list[str]:
    """``names`` without those another one imports anyway (``a`` when ``a.b`` is there)."""
    names = set(names)
    parents = {name.rsplit(".", 1)[0] for name in names if "." in name}
    while True:
        more = {p.rsplit(".", 1)[0] for p in parents if "." in p} - parents
        if not more:
            break
        parents |= more
    return sorted(names - parents)


class LearnedPreload:
    """One interpreter's learned preload list, read once per run and saved at its end."""

    def __init__(self, path_of: Callable[[], object], executable: str,
                 project_dirs: list[str], note: Callable[[str], object]) -> None:
        self._path_of = path_of  # the durations history; may raise (no usable state dir)
        self.executable = executable
        self.project_dirs = [d for d in dict.fromkeys(project_dirs) if d]
        self.note = note
        self._lock = threading.Lock()
        self._loaded: tuple[list[str], dict[str, str]] | None = None
        self.learned: set[str] = set()        # reported by this run's nodes
        self.refused: dict[str, str] = {}     # refused by this run's templates
        self._saved: set[str] = set()         # of those, the ones in the history now
        self.forgotten: set[str] = set()      # learned modules that no longer import
        self.path = None

    def _load(self) -> tuple[list[str], dict[str, str]]:
        if self._loaded is None:
            from disttest.durations import load_durations

            try:
                self.path = self._path_of()
                entry = load_durations(self.path, self.note).get(
                    "preload", {}).get(self.executable, {})
            except Exception as exc:  # the history is a help: without it, nothing is learned
                self.note(f"preload = \"auto\": no history to learn from ({exc})")
                entry = {}
            self._loaded = (list(entry.get("modules", [])), dict(entry.get("refused", {})))
        return self._loaded

    def modules(self) -> list[str]:
        """The learned list, less what was refused (this run's read of the history)."""
        with self._lock:
            modules, refused = self._load()
            return [m for m in modules if m not in refused and m not in self.refused
                    and m not in self.forgotten]

    def expand(self, preload: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``preload`` with ``auto`` replaced by the learned list: (modules, learned ones)."""
        named = tuple(m for m in preload if m != AUTO)
        learned = tuple(m for m in self.modules() if m not in named)
        return named + learned, frozenset(learned)

    def refuse(self, module: str, reason: str) -> None:
        """``module`` started a thread or left a descriptor open: never preload it again."""
        with self._lock:
            self.refused[module] = reason

    def forget(self, modules) -> None:
        """``modules`` no longer import: out of the list, learned again if nodes import them."""
        with self._lock:
            self.forgotten.update(modules)

    def learn(self, nodes: Iterable) -> None:
        """Ask each live, running node what it imported (a node that cannot say is skipped)."""
        from disttest.clusters.parallel import in_parallel
        from disttest.errors import DisttestError

        def ask(node) -> None:
            if not node.alive or node.paused:
                return
            try:
                names = node.imports(self.project_dirs, timeout=2.0)  # a stuck node: skipped
            except (DisttestError, OSError):
                return
            with self._lock:
                self.learned.update(n for n in names if is_module_name(n))

        in_parallel(ask, [n for n in nodes if getattr(n, "process", None) is not None])

    def save(self) -> tuple[int, object] | None:
        """Merge what was learned since the last save into the history: (modules
        added, path), or None when there was nothing to write."""
        with self._lock:
            refused = {m: why for m, why in self.refused.items() if m not in self._saved}
            if self.path is None or (not self.learned and not refused and not self.forgotten):
                return None  # never read (no "auto"), no usable history, or nothing new
            learned, forgotten = set(self.learned), self.forgotten - self.learned
            self.learned.clear()
            self._saved.update(refused)
        from disttest.durations import update_durations

        added = []

        def change(data: dict) -> None:
            entry = data.setdefault("preload", {}).setdefault(self.executable, {})
            known = dict(entry.get("refused", {}))
            known.update(refused)
            before = set(entry.get("modules", []))
            modules = leaves(((before - forgotten) | learned) - set(known))[:MAX_MODULES]
            added.extend(set(modules) - before)
            entry["modules"], entry["refused"] = modules, dict(sorted(known.items()))

        update_durations(self.path, change, self.note)
        return len(added), self.path


def project_dirs(config) -> list[str]:
    """What counts as the project's own code: its root and the working directory."""
    return [str(config.project_root or ""), os.getcwd()]
