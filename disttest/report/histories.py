"""The history views a failing test saved, as its failure message names them.

``assertLinearizable`` puts the nemesis seed and an ``[[ATTACHMENT|...html]]``
line (the Jenkins JUnit attachments convention) into the failure message, so
every report finds them in the same place, under ``-j`` too: the console
summary lists them, the JSON report carries them per test, and the HTML
report links them.
"""
from __future__ import annotations

import re

_ATTACHMENT = re.compile(r"\[\[ATTACHMENT\|([^\]\n]+\.html)\]\]")
_SEED = re.compile(r"\bnemesis seed (\d+):")


def history_of(details: str) -> dict | None:
    """``{"html": path, "seed": int or None}`` of the history view a failure
    names, or None when it names none."""
    found = _ATTACHMENT.findall(details or "")
    if not found:
        return None
    seed = _SEED.findall(details)
    return {"html": found[-1].strip(), "seed": int(seed[-1]) if seed else None}


def render_histories(records) -> str:
    """Lines for the summary: each failing test's history view and seed."""
    lines = []
    for record in records:
        if record.outcome not in ("failed", "error"):
            continue
        found = history_of(record.details)
        if found is None:
            continue
        seed = f" (replay: --seed {found['seed']})" if found["seed"] is not None else ""
        lines.append(f"  {record.id}: {found['html']}{seed}")
    if not lines:
        return ""
    return "\n".join(["History views of failing tests"] + lines)
