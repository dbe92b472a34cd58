"""The durations history: one JSON file per project in the state directory.

What earlier runs learned, for later runs to use: class run times and
cluster start-ups (``classes``, ``cluster_startup_s``: shard and ``-j``
balancing, see sharding.py), and the modules nodes imported (``preload``:
``preload = "auto"``, see clusters/preload_auto.py). It is validated on
every read like every state file (statefiles.py): one of the wrong shape is
set aside and counts as empty. Writers merge their part into what is there
and replace the file in one rename.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from disttest.settings import is_module_name
from disttest.statefiles import BadFile, exclusive, read_json, set_aside

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


def durations_path(config) -> Path:
    """The history file: ``durations_file``, else one per project in state_dir."""
    if config.durations_file:
        return Path(config.durations_file)
    project = str(config.project_root or os.getcwd())
    digest = hashlib.sha256(project.encode()).hexdigest()[:16]
    return config.state_path() / "durations" / f"{digest}.json"


MAX_MODULES = 4096  # far above any real program's imports; a bound for a hand-edited file


def preload_problem(section) -> str | None:
    """What is wrong with the ``preload`` part of a durations history, or None."""
    if not isinstance(section, dict):
        return "'preload' must map interpreters to what was learned for them"
    for interpreter, entry in section.items():
        where = f"preload[{interpreter!r}]"
        if not isinstance(entry, dict) or set(entry) - {"modules", "refused"}:
            return f"{where} must be an object with 'modules' and 'refused'"
        modules, refused = entry.get("modules", []), entry.get("refused", {})
        if not isinstance(modules, list) or len(modules) > MAX_MODULES:
            return f"{where}['modules'] must be a list of at most {MAX_MODULES} module names"
        bad = next((m for m in modules if not is_module_name(m)), None)
        if bad is not None:
            return f"{where}['modules'] holds {bad!r}, which is not a module name"
        if not isinstance(refused, dict) or len(refused) > MAX_MODULES:
            return f"{where}['refused'] must map module names to reasons"
        bad = next((m for m, why in refused.items()
                    if not is_module_name(m) or not isinstance(why, str)), None)
        if bad is not None:
            return f"{where}['refused'] holds {bad!r}, not a module name with its reason"
    return None


def durations_problem(data) -> str | None:
    """What is wrong with the shape of a durations history, or None."""
    if not isinstance(data, dict):
        return f"a durations history is a JSON object, not {type(data).__name__}"
    for key in ("classes", "cluster_startup_s"):
        table = data.get(key, {})
        if not isinstance(table, dict):
            return f"{key!r} must map names to seconds"
        for name, seconds in table.items():
            if (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                    or not 0 <= seconds < float("inf")):
                return f"{key}[{name!r}] must be a number of seconds, not {seconds!r}"
    return preload_problem(data.get("preload", {}))


def load_durations(path: Path, note=None) -> dict:
    """The durations history in ``path``; empty when there is none. A file of
    the wrong shape is set aside (with a note to ``note``) and counts as none."""
    try:
        data = read_json(path)
    except FileNotFoundError:
        return {}
    except BadFile as exc:
        set_aside(path, str(exc), note)
        return {}
    problem = durations_problem(data)
    if problem is not None:
        set_aside(path, problem, note)
        return {}
    return data


def update_durations(path: Path, change: Callable[[dict], Any], note=None) -> None:
    """Apply ``change`` to the history in ``path`` (validated, or empty) and write it
    back, holding the history's lock: writers that end together (``-j`` workers,
    concurrent runs) take turns, so none loses what another added."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path.with_suffix(".lock")):
        data = load_durations(path, note)
        change(data)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


def save_durations(path: Path, result, stats, note=None) -> None:
    """Merge this run's class durations and cluster start-ups into ``path``."""
    def change(data: dict) -> None:
        classes = data.setdefault("classes", {})
        run: dict[str, float] = {}
        for record in result.records:
            run[record.classname] = run.get(record.classname, 0.0) + record.duration_s
        classes.update({name: round(seconds, 4) for name, seconds in run.items()})
        startups = data.setdefault("cluster_startup_s", {})
        for cluster in stats.clusters.values():
            if not cluster.reused_from_previous_run:
                startups[str(cluster.size)] = round(cluster.startup_s, 4)

    update_durations(path, change, note)
