"""Every setting: its converter, what is allowed, its default and what it does.

The one table of disttest's settings (``SPECS``), read by ``config.py`` from
files, the environment and the command line, and by the documentation
(``DOCS``). Converters return the value or raise ValueError; an ``Invalid``
one says why, and the user sees that reason.
"""
from __future__ import annotations

import difflib
import os

TYPE_CHECKING = False  # typing costs milliseconds of every run's start; annotations only
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

from .errors import ConfigError
from .options import FALLBACKS

TIMEOUT_KEYS = ("startup_timeout", "cleanup_timeout", "call_timeout")
ENV_PREFIX = "DISTTEST_"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})



# Every setting and its default, in the order they are documented.
FIELDS: Dict[str, Any] = {
    "auto_cluster": True, "reuse_clusters": True, "default_cluster_size": 3,
    "max_cluster_size": 16, "startup_timeout": 30.0, "cleanup_timeout": 10.0,
    "call_timeout": 30.0, "slow_test_notice": 30.0, "port_range": (20000, 29999), "host": "127.0.0.1",
    "fallback": None, "startup_retries": 2, "retry_backoff": 0.5, "keep_clusters_ttl": 0.0,
    "timeout_multiplier": 2.0, "junit_xml": None, "json_report": None,
    "html_report": None,
    "verbose_cluster_logs": False, "save_cluster_logs": None, "state_dir": None,
    "durations_file": None, "launcher": "local", "hosts": (), "ssh_options": (),
    "remote_python": None, "node_start": "template", "preload": (),
    # Resolved, not settings:
    "ci": False, "ci_provider": None, "project_root": None, "config_files": (),
    "from_ci_profile": frozenset(),  # settings whose value came from a ci table
}


# --- converters: return the value or raise ValueError (an Invalid one says why) ---

class Invalid(ValueError):
    """A bad value, with a reason worth showing to the user."""


def parse_bool(value: Any) -> bool:
    """A boolean setting: true/yes/on/1 or false/no/off/0 (any case), or a bool."""
    if isinstance(value, bool) or isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("")


def _number(kind: type, minimum: float, inclusive: bool = True) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            value = kind(value.strip())  # ValueError for "abc" (and "1.5" for an int)
        if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
            raise ValueError("")
        finite = value == value and value not in (float("inf"), float("-inf"))
        if not finite or value < minimum or (value == minimum and not inclusive):
            raise ValueError("")
        return kind(value)
    return convert


def _port_range(value: Any) -> Tuple[int, int]:
    if not isinstance(value, (str, list, tuple)):
        raise ValueError("")
    parts = [p.strip() for p in value.split("-")] if isinstance(value, str) else list(value)
    if len(parts) != 2:
        raise Invalid("expected two port numbers, the first and the last")
    if not all(type(p) is int or isinstance(p, str) and p.isdigit() for p in parts):
        raise Invalid("the ports must be whole numbers")
    low, high = int(parts[0]), int(parts[1])
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise Invalid("ports are numbered from 1 to 65535")
    if low > high:
        raise Invalid(f"the range is reversed: {low} is above {high}")
    return low, high


def _text(choices: Tuple[str, ...] = (), optional: bool = False) -> Callable[[Any], Any]:
    def convert(value: Any) -> Optional[str]:
        if optional and (value is None or isinstance(value, str) and not value.strip()):
            return None  # an empty path or fallback means "not set"
        if not isinstance(value, str) or not value.strip() or (
                choices and value.strip().lower() not in choices):
            raise ValueError("")
        return value.strip().lower() if choices else value.strip()
    return convert


LAUNCHERS = ("local", "ssh")
NODE_STARTS = ("spawn", "template")


def is_module_name(name: Any) -> bool:
    """A dotted module name: identifiers joined by dots."""
    return isinstance(name, str) and bool(name) and all(
        part.isidentifier() for part in name.split("."))


def modules_or_auto(value: Any) -> Tuple[str, ...]:
    """Module names and ``auto`` (the learned list, any case): a list, or one
    comma-separated string; ValueError (Invalid: with the reason) otherwise."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, str) for m in value):
        raise ValueError("")
    names = []
    for name in value:
        name = name.strip()
        if name.lower() == "auto":
            name = "auto"
        elif not is_module_name(name):
            raise Invalid(f"{name!r} is not a module name")
        if name not in names:
            names.append(name)
    return tuple(names)
_SSH_OPTIONS_REFUSED = ("-n", "-f", "-N", "-t", "-tt")


def _hosts(value: Any) -> Tuple[str, ...]:
    """A list of SSH hosts (``[user@]host[:port]``), or one comma-separated string."""
    from disttest.hosts import parse_host  # needed only when set

    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(h, str) for h in value):
        raise ValueError("")
    for spec in value:
        try:
            parse_host(spec)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    return tuple(spec.strip() for spec in value)


def _ssh_options(value: Any) -> Tuple[str, ...]:
    """Extra ``ssh`` arguments: a list, or one string split the way a shell would."""
    import shlex

    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise Invalid(f"cannot split it into arguments: {exc}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(o, str) and o for o in value):
        raise ValueError("")
    refused = [o for o in value if o in _SSH_OPTIONS_REFUSED]
    if refused:
        raise Invalid(f"{refused[0]} would cut the node off from its bootstrap or lifetime")
    return tuple(value)


_BOOL, _PATH, _INT0, _INT1 = "true or false", "a path", "a whole number >= 0", "a whole number > 0"
_SECONDS, _POSITIVE = "a number of seconds >= 0", "a number of seconds > 0"
_OPTIONAL_PATH = _text(optional=True)
# key: (converter, what is allowed, one-line description), in the order they are shown
SPECS: Dict[str, Tuple[Callable[[Any], Any], str, str]] = {
    "auto_cluster": (parse_bool, _BOOL, "Start clusters for tests automatically; false = manual mode."),
    "reuse_clusters": (parse_bool, _BOOL, "Lend an idle compatible cluster to the next test class."),
    "default_cluster_size": (_number(int, 1), _INT1, "Nodes for a class that sets no size."),
    "max_cluster_size": (_number(int, 1), _INT1, "Largest cluster disttest will start."),
    "startup_timeout": (_number(float, 0, False), _POSITIVE, "Seconds to become healthy."),
    "cleanup_timeout": (_number(float, 0, False), _POSITIVE, "Seconds for nodes to stop."),
    "call_timeout": (_number(float, 0), _SECONDS + " (0 = none)", "Timeout of a node call."),
    "slow_test_notice": (_number(float, 0), _SECONDS + " (0 = never)",
                         "Say which node call a test waits on once it runs this long."),
    "port_range": (_port_range, 'a range "LOW-HIGH" with 1 <= LOW <= HIGH <= 65535',
                   "Ports disttest may give to nodes, first-last inclusive."),
    "host": (_text(), "a non-empty host name or IP address", "Address nodes listen on."),
    "fallback": (_text(FALLBACKS, optional=True), "one of " + ", ".join(FALLBACKS),
                 "When a cluster cannot start: skip, reduce, simulate or fail."),
    "startup_retries": (_number(int, 0), _INT0, "Extra attempts to start a cluster."),
    "retry_backoff": (_number(float, 0), _SECONDS, "First delay between attempts; doubles."),
    "keep_clusters_ttl": (_number(float, 0), _SECONDS, "Keep idle clusters this long; 0 = no."),
    "timeout_multiplier": (_number(float, 0, False), "a number > 0", "Timeout factor in CI."),
    "junit_xml": (_OPTIONAL_PATH, _PATH, "Write a JUnit XML report to this file."),
    "json_report": (_OPTIONAL_PATH, _PATH, "Write a JSON report to this file."),
    "html_report": (_OPTIONAL_PATH, _PATH, "Write an HTML report to this file."),
    "verbose_cluster_logs": (parse_bool, _BOOL, "Print every cluster operation and node log line."),
    "save_cluster_logs": (_OPTIONAL_PATH, _PATH, "Copy every node's log into this directory."),
    "state_dir": (_OPTIONAL_PATH, _PATH, "Where kept clusters are recorded."),
    "durations_file": (_OPTIONAL_PATH, _PATH,
                       "The project's history: class durations for balancing shards, "
                       "modules learned by preload = \"auto\" (default: in state_dir)."),
    "launcher": (_text(LAUNCHERS), "one of " + ", ".join(LAUNCHERS),
                 "How nodes start: local processes, or over ssh on hosts."),
    "hosts": (_hosts, 'a list of "[user@]host[:port]" (a comma-separated string in INI '
                      "files and the environment)", "SSH hosts that nodes go to, round-robin."),
    "ssh_options": (_ssh_options, 'a list of ssh arguments (one shell-quoted string in INI '
                                  "files and the environment)", "Extra arguments for ssh."),
    "remote_python": (_text(optional=True), "an interpreter path on the hosts",
                      "Python on the hosts (default: this interpreter's path)."),
    "node_start": (_text(NODE_STARTS), "one of " + ", ".join(NODE_STARTS),
                   "How local nodes start: a new interpreter each, or forked from a "
                   "preloaded template."),
    "preload": (modules_or_auto, 'a list of module names and/or "auto" (a comma-separated '
                                 "string in INI files and the environment)",
                "Modules the node template imports before it forks nodes; \"auto\": "
                "those nodes imported in earlier runs."),
}
KEYS: Tuple[str, ...] = tuple(SPECS)
DOCS: Dict[str, str] = {key: spec[2] for key, spec in SPECS.items()}
DEFAULTS: Dict[str, Any] = {name: default for name, default in FIELDS.items()
                            if name in KEYS}


def unknown_setting(location: str, key: str, env: bool = False, value: Any = None) -> ConfigError:
    """The error for an unknown ``key`` in ``location``, with the nearest known key."""
    shown = (lambda k: ENV_PREFIX + k.upper()) if env else (lambda k: k)
    scored = sorted(((difflib.SequenceMatcher(None, key, k).ratio(), k) for k in KEYS),
                    reverse=True)
    # The best match, and the next one too when it is nearly as close (ambiguous typos).
    match = [k for ratio, k in scored[:2] if ratio >= 0.6 and ratio >= scored[0][0] - 0.11]
    hint = f" (did you mean {' or '.join(shown(m) for m in match)}?)" if match else ""
    given = f" = {value!r}" if value is not None else ""
    return ConfigError(f"{location}: unknown setting {shown(key)}{given}{hint}",
                       steps=[f"valid settings: {', '.join(shown(k) for k in KEYS)}"],
                       source=location, key=key, suggestion=match[0] if match else None)


def convert(location: str, key: str, raw: Any, base_dir: Optional[str] = None) -> Any:
    """``raw`` (from ``location``) as ``key``'s value, or the ConfigError saying what is allowed."""
    converter, allowed, _ = SPECS[key]
    try:
        value = converter(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError.bad_value(location, key, raw, allowed,
                                    cause=str(exc) if isinstance(exc, Invalid) else "") from None
    if converter is _OPTIONAL_PATH and value is not None:
        value = os.path.expanduser(value)
        if base_dir is not None:  # a relative path in a file is relative to that file
            value = os.path.normpath(os.path.join(base_dir, value))
    return value
