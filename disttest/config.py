"""The effective disttest configuration, resolved once, with where each value came from.

Precedence: command line > DISTTEST_<KEY> environment > disttest.toml > pyproject.toml
[tool.disttest] > setup.cfg [disttest] > tox.ini [disttest] > defaults; in CI each file's
``ci`` table applies on top of that file. Values are checked where they are read, so
every mistake becomes a ConfigError naming its file and table, variable or option.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import sys
from collections import namedtuple
TYPE_CHECKING = False  # typing costs milliseconds of every run's start; annotations only
if TYPE_CHECKING:
    import pathlib
    from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .environment import detect_ci
from .errors import ConfigError

__all__ = ["Config", "CLI_OPTIONS", "DEFAULTS", "DOCS", "ENV_PASSTHROUGH", "ENV_PREFIX",
           "FALLBACKS", "KEYS", "TIMEOUT_KEYS", "format_config", "load_config"]

FALLBACKS = ("skip", "reduce", "simulate", "fail")
TIMEOUT_KEYS = ("startup_timeout", "cleanup_timeout", "call_timeout")
ENV_PREFIX = "DISTTEST_"
#: ``DISTTEST_*`` variables that are not settings (DISTTEST_CI forces CI mode on or off;
#: DISTTEST_SEED seeds the nemesis; DISTTEST_HISTORY_DIR receives failing histories).
ENV_PASSTHROUGH = frozenset({"DISTTEST_CI", "DISTTEST_SEED", "DISTTEST_HISTORY_DIR"})
#: Command line options whose name is not ``--`` plus the key with dashes.
CLI_OPTIONS: Mapping[str, str] = {"reuse_clusters": "--no-reuse",
                                  "keep_clusters_ttl": "--keep-cluster",
                                  "verbose_cluster_logs": "--cluster-debug"}
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _default_sources() -> Dict[str, str]:
    return {key: "default" for key in KEYS}


# Every setting and its default, in the order they are documented.
_FIELDS: Dict[str, Any] = {
    "auto_cluster": True, "reuse_clusters": True, "default_cluster_size": 3,
    "max_cluster_size": 16, "startup_timeout": 30.0, "cleanup_timeout": 10.0,
    "call_timeout": 30.0, "slow_test_notice": 30.0, "port_range": (20000, 29999), "host": "127.0.0.1",
    "fallback": None, "startup_retries": 2, "retry_backoff": 0.5, "keep_clusters_ttl": 0.0,
    "timeout_multiplier": 2.0, "junit_xml": None, "json_report": None,
    "verbose_cluster_logs": False, "save_cluster_logs": None, "state_dir": None,
    "durations_file": None, "launcher": "local", "hosts": (), "ssh_options": (),
    "remote_python": None,
    # Resolved, not settings:
    "ci": False, "ci_provider": None, "project_root": None, "config_files": (),
    "from_ci_profile": frozenset(),  # settings whose value came from a ci table
}


class Config:
    """Every resolved setting; the timeouts are effective values (already ×CI).

    Immutable. A plain class rather than a dataclass: every run builds this
    module, and generating a 29-field frozen dataclass costs milliseconds.
    ``sources`` maps each setting to where its value came from.
    """

    __slots__ = tuple(_FIELDS) + ("sources",)

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(_FIELDS) - {"sources"}
        if unknown:
            raise TypeError(f"Config() got unknown settings: {', '.join(sorted(unknown))}")
        for name, default in _FIELDS.items():
            object.__setattr__(self, name, values.get(name, default))
        object.__setattr__(self, "sources", values.get("sources") or _default_sources())

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: Config is "
                                              "immutable (use config.replace(...))")

    __delattr__ = __setattr__

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in _FIELDS) + ")"

    @property
    def effective_fallback(self) -> str:
        """The fallback in force: as configured, else ``fail`` in CI and ``skip`` elsewhere."""
        return self.fallback or ("fail" if self.ci else "skip")

    def state_path(self) -> pathlib.Path:
        """The state directory (registry of kept clusters), created with mode 0700."""
        import pathlib

        if not self.state_dir:
            from disttest.statedir import default_state_dir

            return default_state_dir()
        path = pathlib.Path(self.state_dir)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _file_error(str(path), "the state directory cannot be created", exc,
                              f"set state_dir to a writable directory (now from "
                              f"{self.sources.get('state_dir', 'default')})") from None
        return path

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied; changed settings are marked "set by code"."""
        if "sources" not in changes:
            changes["sources"] = {**self.sources, **{k: "set by code" for k in changes}}
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Config(**values)


# --- converters: return the value or raise ValueError (an _Invalid one says why) ---

class _Invalid(ValueError):
    """A bad value, with a reason worth showing to the user."""


def _bool(value: Any) -> bool:
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
        raise _Invalid("expected two port numbers, the first and the last")
    if not all(type(p) is int or isinstance(p, str) and p.isdigit() for p in parts):
        raise _Invalid("the ports must be whole numbers")
    low, high = int(parts[0]), int(parts[1])
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise _Invalid("ports are numbered from 1 to 65535")
    if low > high:
        raise _Invalid(f"the range is reversed: {low} is above {high}")
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
            raise _Invalid(str(exc)) from None
    return tuple(spec.strip() for spec in value)


def _ssh_options(value: Any) -> Tuple[str, ...]:
    """Extra ``ssh`` arguments: a list, or one string split the way a shell would."""
    import shlex

    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise _Invalid(f"cannot split it into arguments: {exc}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(o, str) and o for o in value):
        raise ValueError("")
    refused = [o for o in value if o in _SSH_OPTIONS_REFUSED]
    if refused:
        raise _Invalid(f"{refused[0]} would cut the node off from its bootstrap or lifetime")
    return tuple(value)


_BOOL, _PATH, _INT0, _INT1 = "true or false", "a path", "a whole number >= 0", "a whole number > 0"
_SECONDS, _POSITIVE = "a number of seconds >= 0", "a number of seconds > 0"
_OPTIONAL_PATH = _text(optional=True)
# key: (converter, what is allowed, one-line description), in the order they are shown
_SPECS: Dict[str, Tuple[Callable[[Any], Any], str, str]] = {
    "auto_cluster": (_bool, _BOOL, "Start clusters for tests automatically; false = manual mode."),
    "reuse_clusters": (_bool, _BOOL, "Lend an idle compatible cluster to the next test class."),
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
    "verbose_cluster_logs": (_bool, _BOOL, "Print every cluster operation and node log line."),
    "save_cluster_logs": (_OPTIONAL_PATH, _PATH, "Copy every node's log into this directory."),
    "state_dir": (_OPTIONAL_PATH, _PATH, "Where kept clusters are recorded."),
    "durations_file": (_OPTIONAL_PATH, _PATH,
                       "Class durations for balancing shards (default: in state_dir)."),
    "launcher": (_text(LAUNCHERS), "one of " + ", ".join(LAUNCHERS),
                 "How nodes start: local processes, or over ssh on hosts."),
    "hosts": (_hosts, 'a list of "[user@]host[:port]" (a comma-separated string in INI '
                      "files and the environment)", "SSH hosts that nodes go to, round-robin."),
    "ssh_options": (_ssh_options, 'a list of ssh arguments (one shell-quoted string in INI '
                                  "files and the environment)", "Extra arguments for ssh."),
    "remote_python": (_text(optional=True), "an interpreter path on the hosts",
                      "Python on the hosts (default: this interpreter's path)."),
}
KEYS: Tuple[str, ...] = tuple(_SPECS)
DOCS: Dict[str, str] = {key: spec[2] for key, spec in _SPECS.items()}
DEFAULTS: Dict[str, Any] = {name: default for name, default in _FIELDS.items()
                            if name in KEYS}


# Converted values from one source (label, values, ci, file); ci layers apply in CI only.
_Layer = namedtuple("_Layer", "label values ci file", defaults=(False, None))


def _unknown(location: str, key: str, env: bool = False, value: Any = None) -> ConfigError:
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


def _convert(location: str, key: str, raw: Any, base_dir: Optional[str] = None) -> Any:
    convert, allowed, _ = _SPECS[key]
    try:
        value = convert(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError.bad_value(location, key, raw, allowed,
                                    cause=str(exc) if isinstance(exc, _Invalid) else "") from None
    if convert is _OPTIONAL_PATH and value is not None:
        value = os.path.expanduser(value)
        if base_dir is not None:  # a relative path in a file is relative to that file
            value = os.path.normpath(os.path.join(base_dir, value))
    return value


def _make_layer(raw: Mapping[str, Any], location: str, path: str, ci: bool = False) -> _Layer:
    values = {}
    for key, value in raw.items():
        if key not in _SPECS:
            raise _unknown(location, key, value=value)
        values[key] = _convert(location, key, value, os.path.dirname(path))
    return _Layer(location + (" (CI profile)" if ci else ""), values, ci, path)


def _display(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        rel = os.pardir
    return path if rel.startswith(os.pardir) else rel


def _file_error(path: str, problem: str, exc: Exception, fix: str) -> ConfigError:
    return ConfigError(f"{_display(path)}: {problem}: {exc}", source=_display(path), steps=[fix])


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise _file_error(path, "cannot be read", exc, "make it readable UTF-8 text") from None


def _read_toml(directory: str, name: str, table_path: Tuple[str, ...]) -> Optional[List[_Layer]]:
    """Layers of ``name``'s disttest table (and its ``ci`` sub-table); None when it has none."""
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        return None
    try:
        tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    except ImportError as exc:  # tomli is a dependency below Python 3.11
        raise _file_error(path, "cannot be read", exc, "pip install tomli") from None
    text = _read_text(path)
    try:
        table: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        if table_path and "disttest" not in text:
            return None  # a broken pyproject.toml that does not configure disttest
        raise _file_error(path, "is not valid TOML", exc, "fix the syntax at that line") from None
    for part in table_path:
        if not isinstance(table, dict) or part not in table:
            return None
        table = table[part]
    location = _display(path) + (f" [{'.'.join(table_path)}]" if table_path else "")
    ci_location = f"{_display(path)} [{'.'.join(table_path + ('ci',))}]"
    ci_table = table.get("ci", {}) if isinstance(table, dict) else None
    for where, sub in ((location, table), (ci_location, ci_table)):
        if not isinstance(sub, dict):
            raise ConfigError(f"{where} must be a table of settings, not {sub!r}", source=where,
                              steps=["write the settings as key = value lines under a table"])
    plain = {k: v for k, v in table.items() if k != "ci"}
    return [_make_layer(plain, location, path), _make_layer(ci_table, ci_location, path, True)]


def _read_ini(directory: str, name: str) -> Optional[List[_Layer]]:
    """Layers of the [disttest] and [disttest:ci] sections; None when there are none."""
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        return None
    text = _read_text(path)
    # No DEFAULT section: its values would leak into [disttest] as unknown keys.
    import configparser

    parser = configparser.ConfigParser(interpolation=None, default_section="\0",
                                       inline_comment_prefixes=("#", ";"))
    try:
        parser.read_string(text, source=_display(path))
    except configparser.Error as exc:
        if "[disttest" not in text:
            return None  # a broken file that does not configure disttest is not ours to judge
        raise _file_error(path, "is not valid INI", exc, "fix the syntax at that line") from None
    layers = []
    for section in parser.sections():
        location = f"{_display(path)} [{section}]"
        if section.lower() in ("disttest", "disttest:ci"):
            layers.append(_make_layer(dict(parser.items(section)), location, path,
                                      ci=section.lower() == "disttest:ci"))
        elif section.lower().startswith("disttest:"):
            raise ConfigError(f"{location}: unknown section; the only sub-section of "
                              "[disttest] is [disttest:ci]", source=location, key=section,
                              steps=["rename the section to [disttest:ci] or remove it"])
    return sorted(layers, key=lambda layer: layer.ci) or None  # CI profile on top


def _discover(start: str) -> Tuple[str, List[_Layer]]:
    """The project root and its file layers, lowest precedence first."""
    directory, fallback_root = start, None
    while True:
        found = [_read_ini(directory, "tox.ini"), _read_ini(directory, "setup.cfg"),
                 _read_toml(directory, "pyproject.toml", ("tool", "disttest")),
                 _read_toml(directory, "disttest.toml", ())]
        if any(layers is not None for layers in found):
            return directory, [layer for layers in found for layer in layers or ()]
        if fallback_root is None and any(os.path.exists(os.path.join(directory, marker))
                                         for marker in ("pyproject.toml", "setup.cfg",
                                                        "tox.ini", ".git")):
            fallback_root = directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return fallback_root or start, []
        directory = parent


def _single_layers(items: List[Tuple[str, str, Any]], env: bool = False) -> List[_Layer]:
    """One layer per (location, key, raw value) from the environment or the command line."""
    layers = []
    for location, key, raw in items:
        if key not in _SPECS:
            raise _unknown(location, key, env, value=raw)
        if raw is not None and not (env and not raw.strip()):  # empty variables count as unset
            layers.append(_Layer(location, {key: _convert(location, key, raw)}))
    return layers


def _resolve_ci(ci: Optional[bool], environ: Mapping[str, str]) -> Tuple[bool, Optional[str], str]:
    """(CI on?, provider when on, how it was decided)."""
    provider = detect_ci(environ)
    if ci is not None:
        on, source = bool(ci), "command line " + ("--ci" if ci else "--no-ci")
    elif environ.get("DISTTEST_CI", "").strip():
        source, raw = "environment DISTTEST_CI", environ["DISTTEST_CI"]
        try:
            on = _bool(raw)
        except ValueError:
            raise ConfigError.bad_value(source, "DISTTEST_CI", raw, "1, true, yes or on (CI on), "
                                        "or 0, false, no or off (CI off)") from None
    else:
        on, source = provider is not None, "detected" if provider else "not detected"
    return on, (provider if on else None), source


def load_config(start_dir: Optional[str] = None, environ: Optional[Mapping[str, str]] = None,
                cli: Optional[Mapping[str, object]] = None, ci: Optional[bool] = None) -> Config:
    """Read every source, apply precedence and the CI profile, validate, return a Config."""
    environ = os.environ if environ is None else environ
    start = os.path.abspath(start_dir or os.getcwd())
    if not os.path.isdir(start):
        raise ConfigError(f"the start directory {start!r} does not exist", source=start,
                          steps=["run disttest from inside the project"])
    ci_on, provider, ci_source = _resolve_ci(ci, environ)
    root, file_layers = _discover(start)
    env_items = [(f"environment {name}", name[len(ENV_PREFIX):].lower(), environ[name])
                 for name in sorted(environ)
                 if name.startswith(ENV_PREFIX) and name not in ENV_PASSTHROUGH]
    cli_items = [("command line " + CLI_OPTIONS.get(key, "--" + key.replace("_", "-")), key, raw)
                 for key, raw in (cli or {}).items()]  # None: argparse's "not given"
    # Every layer was validated when read, CI profiles too, so a mistake in a CI
    # table shows up on a developer machine rather than first in CI.
    values, sources, from_ci = dict(DEFAULTS), _default_sources(), set()
    for layer in file_layers + _single_layers(env_items, env=True) + _single_layers(cli_items):
        if layer.ci and not ci_on:
            continue
        for key, value in layer.values.items():
            values[key], sources[key] = value, layer.label
            (from_ci.add if layer.ci else from_ci.discard)(key)
    _check_sizes(values, sources)
    _check_launcher(values, sources)
    factor = values["timeout_multiplier"]
    for key in TIMEOUT_KEYS if ci_on and factor != 1 else ():
        if key not in from_ci and values[key]:
            values[key] *= factor
            sources[key] += f" ×{factor:g} (CI)"
    sources["ci"] = ci_source
    files = tuple(dict.fromkeys(_display(layer.file) for layer in reversed(file_layers)
                                if layer.file))
    return Config(**values, ci=ci_on, ci_provider=provider, project_root=root,
                  config_files=files, sources=sources, from_ci_profile=frozenset(from_ci))


def _check_sizes(values: Dict[str, Any], sources: Dict[str, str]) -> None:
    key = "default_cluster_size"
    size, cap = values[key], values["max_cluster_size"]
    if cap < size and sources[key] == "default":  # only the built-in default gives way
        values[key], sources[key] = cap, "default (capped by max_cluster_size)"
    elif cap < size:
        raise ConfigError(f"{key} = {size} ({sources[key]}) is larger than max_cluster_size = "
                          f"{cap} ({sources['max_cluster_size']})", source=sources[key], key=key,
                          steps=[f"lower {key} or raise max_cluster_size"], value=size,
                          allowed=f"a whole number <= {cap}")
    low, high = values["port_range"]
    if high - low + 1 < cap:
        raise ConfigError(
            f"port_range = \"{low}-{high}\" ({sources['port_range']}) holds {high - low + 1} "
            f"port(s), fewer than max_cluster_size = {cap} ({sources['max_cluster_size']})",
            cause="every node needs at least one port of its own",
            steps=[f"widen port_range, for example to \"{low}-{min(65535, low + 999)}\"",
                   "or lower max_cluster_size"], source=sources["port_range"],
            key="port_range", value=f"{low}-{high}", allowed=f"a range of at least {cap} ports")


def _check_launcher(values: Dict[str, Any], sources: Dict[str, str]) -> None:
    if values["launcher"] == "ssh" and not values["hosts"]:
        raise ConfigError(f"launcher = \"ssh\" ({sources['launcher']}) needs hosts, and none "
                          "are set", source=sources["launcher"], key="hosts", value=(),
                          allowed='a list of "[user@]host[:port]"',
                          steps=['set hosts, for example hosts = ["node1", "me@node2:2222"]',
                                 'or set launcher = "local"'])


def _show(config: Config, key: str) -> str:
    value = getattr(config, key)
    if key == "remote_python" and value is None:
        return "(this interpreter's path)"
    if key == "ssh_options":
        import shlex
        return " ".join(shlex.quote(o) for o in value) if value else "(none)"
    if key == "hosts":
        return ", ".join(value) if value else "(none)"
    if key == "fallback" and value is None:
        return f"auto ({config.effective_fallback} {'in CI' if config.ci else 'outside CI'})"
    if key == "state_dir" and value is None:
        from disttest.statedir import default_state_dir

        try:
            return str(default_state_dir())
        except ConfigError as error:
            return f"(none usable: {error})"
    if key == "port_range":
        return f"{value[0]}-{value[1]}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "(not set)" if value is None else str(value)


def format_config(config: Config, as_json: bool = False) -> str:
    """The text (or JSON) printed by ``python -m disttest config``."""
    source = {key: config.sources.get(key, "default") for key in KEYS}
    if as_json:
        settings = {key: {"value": list(getattr(config, key)) if key == "port_range"
                          else getattr(config, key), "source": source[key]} for key in KEYS}
        import json

        return json.dumps({"project_root": config.project_root, "ci": config.ci,
                           "ci_provider": config.ci_provider, "files": list(config.config_files),
                           "settings": settings,
                           "effective_fallback": config.effective_fallback}, indent=2)
    how = config.sources.get("ci", "not detected")
    if config.ci:
        ci_text = (config.ci_provider or "on") + ("" if how == "detected" else f" ({how})")
    else:
        ci_text = "not detected" if how == "not detected" else f"off ({how})"
    shown = {key: _show(config, key) for key in KEYS}
    key_width, value_width = max(map(len, KEYS)), max(map(len, shown.values()))
    return "\n".join([f"project root: {config.project_root or '(none)'}",
                      f"files read:   {', '.join(config.config_files) or 'none'}",
                      f"CI:           {ci_text}", ""]
                     + [f"{key:<{key_width}} = {shown[key]:<{value_width}}  ({source[key]})"
                        for key in KEYS])
