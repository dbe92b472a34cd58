"""Colour by role, in one place: pass, fail, skip, cluster, warn, dim.

Colour is on only when the stream is a terminal, ``NO_COLOR`` is not set,
and we are not in CI — unless ``FORCE_COLOR`` (or ``--color``) forces it.
"""
from __future__ import annotations

import os

_ROLES = {
    "pass": "GREEN",
    "fail": "RED",
    "skip": "YELLOW",
    "cluster": "CYAN",
    "warn": "YELLOW",
    "dim": None,
    "title": None,
}


def color_enabled(stream, ci: bool = False, environ=None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if ci:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Painter:
    """``paint(role, text)``: text in the role's colour, or unchanged when off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._codes: dict[str, str] = {}
        if enabled:
            from colorama import Fore, Style

            for role, colour in _ROLES.items():
                if role == "dim":
                    self._codes[role] = Style.DIM
                elif role == "title":
                    self._codes[role] = Style.BRIGHT
                else:
                    self._codes[role] = getattr(Fore, colour)
            self._reset = Style.RESET_ALL

    def __call__(self, role: str, text: str) -> str:
        if not self.enabled:
            return text
        return f"{self._codes[role]}{text}{self._reset}"
