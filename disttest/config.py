"""The effective disttest configuration, resolved once, with where each value came from.

Precedence: command line > DISTTEST_<KEY> environment > disttest.toml > pyproject.toml
[tool.disttest] > setup.cfg [disttest] > tox.ini [disttest] > defaults; in CI each file's
``ci`` table applies on top of that file. Values are checked where they are read, so
every mistake becomes a ConfigError naming its file and table, variable or option.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections import namedtuple
TYPE_CHECKING = False  # typing costs milliseconds of every run's start; annotations only
if TYPE_CHECKING:
    import pathlib
    from typing import Any, Dict, List, Mapping, Optional, Tuple

from .environment import detect_ci
from .errors import ConfigError
from .settings import (DEFAULTS, DOCS, ENV_PREFIX, FALLBACKS, FIELDS, KEYS, SPECS,
                       TIMEOUT_KEYS, convert, parse_bool, unknown_setting)

__all__ = ["Config", "CLI_OPTIONS", "DEFAULTS", "DOCS", "ENV_PASSTHROUGH", "ENV_PREFIX",
           "FALLBACKS", "KEYS", "TIMEOUT_KEYS", "format_config", "load_config"]

#: ``DISTTEST_*`` variables that are not settings (DISTTEST_CI forces CI mode on or off;
#: DISTTEST_SEED seeds the nemesis; DISTTEST_HISTORY_DIR receives failing histories).
ENV_PASSTHROUGH = frozenset({"DISTTEST_CI", "DISTTEST_SEED", "DISTTEST_HISTORY_DIR"})
#: Command line options whose name is not ``--`` plus the key with dashes.
CLI_OPTIONS: Mapping[str, str] = {"reuse_clusters": "--no-reuse",
                                  "keep_clusters_ttl": "--keep-cluster",
                                  "verbose_cluster_logs": "--cluster-debug"}


def _default_sources() -> Dict[str, str]:
    return {key: "default" for key in KEYS}


class Config:
    """Every resolved setting; the timeouts are effective values (already ×CI).

    Immutable. A plain class rather than a dataclass: every run builds this
    module, and generating a 29-field frozen dataclass costs milliseconds.
    ``sources`` maps each setting to where its value came from.
    """

    __slots__ = tuple(FIELDS) + ("sources",)

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(FIELDS) - {"sources"}
        if unknown:
            raise TypeError(f"Config() got unknown settings: {', '.join(sorted(unknown))}")
        for name, default in FIELDS.items():
            object.__setattr__(self, name, values.get(name, default))
        object.__setattr__(self, "sources", values.get("sources") or _default_sources())

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: Config is "
                                              "immutable (use config.replace(...))")

    __delattr__ = __setattr__

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in FIELDS) + ")"

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


# Converted values from one source (label, values, ci, file); ci layers apply in CI only.
_Layer = namedtuple("_Layer", "label values ci file", defaults=(False, None))


def _make_layer(raw: Mapping[str, Any], location: str, path: str, ci: bool = False) -> _Layer:
    values = {}
    for key, value in raw.items():
        if key not in SPECS:
            raise unknown_setting(location, key, value=value)
        values[key] = convert(location, key, value, os.path.dirname(path))
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
        if key not in SPECS:
            raise unknown_setting(location, key, env, value=raw)
        if raw is not None and not (env and not raw.strip()):  # empty variables count as unset
            layers.append(_Layer(location, {key: convert(location, key, raw)}))
    return layers


def _resolve_ci(ci: Optional[bool], environ: Mapping[str, str]) -> Tuple[bool, Optional[str], str]:
    """(CI on?, provider when on, how it was decided)."""
    provider = detect_ci(environ)
    if ci is not None:
        on, source = bool(ci), "command line " + ("--ci" if ci else "--no-ci")
    elif environ.get("DISTTEST_CI", "").strip():
        source, raw = "environment DISTTEST_CI", environ["DISTTEST_CI"]
        try:
            on = parse_bool(raw)
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
    if key in ("hosts", "preload"):
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
