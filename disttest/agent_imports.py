"""What a node imported that a node template could preload (stdlib only).

Serves the ``imports`` request (``preload = "auto"``, see
disttest/clusters/preload_auto.py): the modules the node has imported since
it started -- ``sys.modules`` now, less what it held when its agent was
ready -- that a template may import on the node's behalf. Kept:

* modules that import under their own name (their spec's name is the key
  in ``sys.modules``: not an alias such as ``os.path``, not a module object
  planted by hand), whose every name part is public (``_json`` comes with
  ``json``, ``asyncio._base`` with ``asyncio``);
* not ``__main__``, and nothing of disttest (the template imports what a
  node needs of it; the rest is the controller's);
* not the project's own code: a module whose file is under one of
  ``project_dirs`` (the project root), unless it is under the interpreter's
  prefixes or a ``site-packages`` directory (a virtual environment in the
  project). The project's code -- test modules, the code under test -- is
  what changes between runs, and what may keep per-process state from its
  import (a pid, a temporary directory) that forked nodes would share.
"""
from __future__ import annotations

import os
import sys


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _projects(path: str, project: tuple[str, ...], installed: tuple[str, ...]) -> bool:
    """Is ``path`` the project's own code?"""
    parts = path.split(os.sep)
    return (_under(path, project) and not _under(path, installed)
            and "site-packages" not in parts and "dist-packages" not in parts)


def preloadable(baseline, project_dirs: list[str]) -> list[str]:
    """Sorted names of modules imported since ``baseline`` that a template may preload."""
    installed = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix,
                                                    sys.exec_prefix, sys.base_exec_prefix})
    project = tuple(os.path.realpath(p) for p in project_dirs if p)
    names = []
    for name, module in list(sys.modules.items()):
        if name in baseline or module is None or name in ("__main__", "__mp_main__"):
            continue
        if name == "disttest" or name.startswith("disttest.") or any(
                part.startswith("_") or not part.isidentifier() for part in name.split(".")):
            continue
        spec = getattr(module, "__spec__", None)
        if getattr(spec, "name", None) != name:
            continue
        origin = getattr(spec, "origin", None)
        paths = [origin] if isinstance(origin, str) and os.path.isabs(origin) else \
            list(getattr(spec, "submodule_search_locations", None) or ())  # a namespace
        if paths and all(_projects(os.path.realpath(p), project, installed) for p in paths):
            continue
        names.append(name)
    return sorted(names)
