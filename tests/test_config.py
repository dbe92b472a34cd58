"""Unit tests for disttest.config: sources, precedence, CI profile, validation, output."""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import stat
import tempfile
import textwrap
import unittest
from unittest import mock

from disttest.config import (CLI_OPTIONS, DEFAULTS, DOCS, ENV_PASSTHROUGH, KEYS, Config,
                             format_config, load_config)
from disttest.errors import ConfigError, DisttestError

GITHUB = {"GITHUB_ACTIONS": "true", "CI": "true"}


class ConfigTestCase(unittest.TestCase):
    """Each test gets its own project directory, removed afterwards."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="disttest-config-")
        self.addCleanup(tmp.cleanup)
        self.root = os.path.realpath(tmp.name)

    def write(self, relpath: str, text: str) -> str:
        path = os.path.join(self.root, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))
        return path

    def load(self, start: str = "", environ=None, cli=None, ci=False) -> Config:
        return load_config(os.path.join(self.root, start), environ=environ or {}, cli=cli, ci=ci)

    def load_error(self, start: str = "", environ=None, cli=None, ci=False) -> str:
        with self.assertRaises(ConfigError) as caught:
            self.load(start, environ, cli, ci)
        self.assertIsInstance(caught.exception, DisttestError)
        return str(caught.exception)


class KeysTest(unittest.TestCase):
    def test_every_key_is_documented_and_has_a_default(self):
        self.assertEqual(set(KEYS), set(DOCS))
        self.assertEqual(set(KEYS), set(DEFAULTS))
        for key in KEYS:
            self.assertTrue(DOCS[key].strip(), key)

    def test_defaults_match_the_documented_table(self):
        self.assertEqual(DEFAULTS, {
            "auto_cluster": True, "reuse_clusters": True, "default_cluster_size": 3,
            "max_cluster_size": 16, "startup_timeout": 30.0, "cleanup_timeout": 10.0,
            "call_timeout": 30.0, "slow_test_notice": 30.0, "port_range": (20000, 29999), "host": "127.0.0.1",
            "fallback": None, "startup_retries": 2, "retry_backoff": 0.5,
            "keep_clusters_ttl": 0.0, "timeout_multiplier": 2.0, "junit_xml": None,
            "json_report": None, "html_report": None, "verbose_cluster_logs": False, "save_cluster_logs": None,
            "durations_file": None,
            "state_dir": None, "launcher": "local", "hosts": (), "ssh_options": (),
            "remote_python": None, "node_start": "template", "preload": ()})

    def test_config_is_frozen_and_hashable(self):
        config = Config()
        with self.assertRaises(dataclasses.FrozenInstanceError):
            config.host = "0.0.0.0"  # type: ignore[misc]
        self.assertEqual(hash(config), hash(Config()))
        self.assertEqual(config.sources["host"], "default")

    def test_ci_is_a_passthrough_variable(self):
        self.assertIn("DISTTEST_CI", ENV_PASSTHROUGH)
        self.assertNotIn("ci", KEYS)


class SourcesTest(ConfigTestCase):
    def test_defaults_when_nothing_is_configured(self):
        os.mkdir(os.path.join(self.root, ".git"))
        config = self.load()
        for key in KEYS:
            self.assertEqual(getattr(config, key), DEFAULTS[key], key)
            self.assertEqual(config.sources[key], "default", key)
        self.assertEqual(config.config_files, ())
        self.assertEqual(config.project_root, self.root)
        self.assertFalse(config.ci)

    def test_disttest_toml(self):
        self.write("disttest.toml", """
            default_cluster_size = 5
            port_range = "30000-30999"
            fallback = "reduce"
            auto_cluster = false
            """)
        config = self.load()
        self.assertEqual(config.default_cluster_size, 5)
        self.assertEqual(config.port_range, (30000, 30999))
        self.assertEqual(config.fallback, "reduce")
        self.assertIs(config.auto_cluster, False)
        self.assertTrue(config.sources["default_cluster_size"].endswith("disttest.toml"))
        self.assertEqual(config.sources["host"], "default")
        self.assertEqual(config.config_files, (os.path.join(self.root, "disttest.toml"),))

    def test_port_range_as_a_toml_list(self):
        self.write("disttest.toml", "port_range = [41000, 41999]\n")
        self.assertEqual(self.load().port_range, (41000, 41999))

    def test_pyproject_tool_table(self):
        self.write("pyproject.toml", """
            [project]
            name = "myapp"

            [tool.disttest]
            startup_timeout = 45
            reuse_clusters = false
            """)
        config = self.load()
        self.assertEqual(config.startup_timeout, 45.0)
        self.assertIs(config.reuse_clusters, False)
        self.assertTrue(config.sources["startup_timeout"].endswith(
            "pyproject.toml [tool.disttest]"))

    def test_setup_cfg_section_converts_strings(self):
        self.write("setup.cfg", """
            [metadata]
            name = myapp

            [disttest]
            reuse_clusters = no
            verbose_cluster_logs = on
            default_cluster_size = 4
            retry_backoff = 0.25   # inline comment
            port_range = 21000 - 21999
            """)
        config = self.load()
        self.assertIs(config.reuse_clusters, False)
        self.assertIs(config.verbose_cluster_logs, True)
        self.assertEqual(config.default_cluster_size, 4)
        self.assertEqual(config.retry_backoff, 0.25)
        self.assertEqual(config.port_range, (21000, 21999))
        self.assertTrue(config.sources["default_cluster_size"].endswith("setup.cfg [disttest]"))

    def test_tox_ini_section(self):
        self.write("tox.ini", """
            [tox]
            envlist = py311

            [testenv]
            commands = python -m disttest discover -s tests

            [disttest]
            host = localhost
            keep_clusters_ttl = 300
            """)
        config = self.load()
        self.assertEqual(config.host, "localhost")
        self.assertEqual(config.keep_clusters_ttl, 300.0)
        self.assertTrue(config.sources["host"].endswith("tox.ini [disttest]"))

    def test_ini_default_section_does_not_leak_into_disttest(self):
        self.write("setup.cfg", "[DEFAULT]\nowner = me\n\n[disttest]\nstartup_retries = 4\n")
        self.assertEqual(self.load().startup_retries, 4)

    def test_environment_variables(self):
        config = self.load(environ={"DISTTEST_DEFAULT_CLUSTER_SIZE": "7",
                                    "DISTTEST_PORT_RANGE": "25000-25100",
                                    "DISTTEST_AUTO_CLUSTER": "false",
                                    "DISTTEST_FALLBACK": "Simulate"})
        self.assertEqual(config.default_cluster_size, 7)
        self.assertEqual(config.port_range, (25000, 25100))
        self.assertIs(config.auto_cluster, False)
        self.assertEqual(config.fallback, "simulate")
        self.assertEqual(config.sources["port_range"], "environment DISTTEST_PORT_RANGE")

    def test_empty_environment_variable_counts_as_unset(self):
        self.write("disttest.toml", "fallback = \"reduce\"\n")
        config = self.load(environ={"DISTTEST_FALLBACK": "", "DISTTEST_STARTUP_RETRIES": " "})
        self.assertEqual(config.fallback, "reduce")
        self.assertEqual(config.startup_retries, 2)

    def test_empty_optional_value_in_a_file_unsets_a_lower_one(self):
        self.write("setup.cfg", "[disttest]\nfallback = reduce\njunit_xml = out.xml\n")
        self.write("pyproject.toml", "[tool.disttest]\nfallback = ''\n")
        config = self.load()
        self.assertIsNone(config.fallback)
        self.assertEqual(config.junit_xml, os.path.join(self.root, "out.xml"))

    def test_command_line(self):
        config = self.load(cli={"default_cluster_size": 2, "reuse_clusters": False,
                                "junit_xml": "out/report.xml", "fallback": None,
                                "verbose_cluster_logs": True})
        self.assertEqual(config.default_cluster_size, 2)
        self.assertIs(config.reuse_clusters, False)
        self.assertEqual(config.junit_xml, "out/report.xml")  # relative to the working dir
        self.assertIsNone(config.fallback)  # None means "option not given"
        self.assertEqual(config.sources["default_cluster_size"],
                         "command line --default-cluster-size")
        self.assertEqual(config.sources["reuse_clusters"], "command line --no-reuse")
        self.assertEqual(config.sources["junit_xml"], "command line --junit-xml")
        self.assertEqual(config.sources["verbose_cluster_logs"], "command line --cluster-debug")
        self.assertEqual(config.sources["fallback"], "default")
        self.assertEqual(CLI_OPTIONS["keep_clusters_ttl"], "--keep-cluster")

    def test_relative_paths_in_files_are_relative_to_the_file(self):
        self.write("disttest.toml", 'junit_xml = "reports/junit.xml"\nstate_dir = "~/st"\n')
        os.makedirs(os.path.join(self.root, "sub"))
        config = self.load("sub")
        self.assertEqual(config.junit_xml, os.path.join(self.root, "reports", "junit.xml"))
        self.assertEqual(config.state_dir, os.path.expanduser("~/st"))

    def test_all_files_together_list_every_file_read(self):
        self.write("tox.ini", "[disttest]\nhost = 127.0.0.2\n")
        self.write("setup.cfg", "[disttest]\nstartup_retries = 3\n")
        self.write("pyproject.toml", "[tool.disttest]\nretry_backoff = 1.5\n")
        self.write("disttest.toml", "default_cluster_size = 4\n")
        config = self.load()
        self.assertEqual((config.host, config.startup_retries, config.retry_backoff,
                          config.default_cluster_size), ("127.0.0.2", 3, 1.5, 4))
        names = [os.path.basename(path) for path in config.config_files]
        self.assertEqual(names, ["disttest.toml", "pyproject.toml", "setup.cfg", "tox.ini"])

    def test_file_names_are_relative_to_the_working_directory(self):
        self.write("pyproject.toml", "[tool.disttest]\nstartup_retries = 3\n")
        old = os.getcwd()
        os.chdir(self.root)
        self.addCleanup(os.chdir, old)
        config = load_config(environ={}, ci=False)
        self.assertEqual(config.sources["startup_retries"], "pyproject.toml [tool.disttest]")
        self.assertEqual(config.config_files, ("pyproject.toml",))
        self.assertEqual(config.project_root, self.root)


class PrecedenceTest(ConfigTestCase):
    ORDER = ["tox.ini", "setup.cfg", "pyproject.toml", "disttest.toml", "environment",
             "command line"]  # lowest first

    def configure(self, directory: str, source: str, value: int, environ: dict, cli: dict):
        path = os.path.join(directory, source)
        if source in ("tox.ini", "setup.cfg"):
            self.write(path, f"[disttest]\nstartup_retries = {value}\n")
        elif source == "pyproject.toml":
            self.write(path, f"[tool.disttest]\nstartup_retries = {value}\n")
        elif source == "disttest.toml":
            self.write(path, f"startup_retries = {value}\n")
        elif source == "environment":
            environ["DISTTEST_STARTUP_RETRIES"] = str(value)
        else:
            cli["startup_retries"] = value

    def test_every_pair_of_sources(self):
        for number, (low, high) in enumerate(itertools.combinations(self.ORDER, 2)):
            with self.subTest(low=low, high=high):
                directory, environ, cli = f"pair{number}", {}, {}
                os.makedirs(os.path.join(self.root, directory))
                self.configure(directory, low, 1, environ, cli)
                self.configure(directory, high, 4, environ, cli)
                config = self.load(directory, environ, cli)
                self.assertEqual(config.startup_retries, 4)
                self.assertIn(high, config.sources["startup_retries"])

    def test_peeling_sources_off_one_by_one(self):
        environ, cli = {}, {}
        for value, source in enumerate(self.ORDER, start=10):
            self.configure("", source, value, environ, cli)
        self.assertEqual(self.load("", environ, cli).startup_retries, 15)
        self.assertEqual(self.load("", environ, None).startup_retries, 14)
        self.assertEqual(self.load("", None, None).startup_retries, 13)
        os.remove(os.path.join(self.root, "disttest.toml"))
        self.assertEqual(self.load().startup_retries, 12)
        os.remove(os.path.join(self.root, "pyproject.toml"))
        self.assertEqual(self.load().startup_retries, 11)
        os.remove(os.path.join(self.root, "setup.cfg"))
        self.assertEqual(self.load().startup_retries, 10)

    def test_sources_merge_key_by_key(self):
        self.write("setup.cfg", "[disttest]\nhost = 127.0.0.3\nstartup_retries = 1\n")
        self.write("disttest.toml", "startup_retries = 5\n")
        config = self.load(environ={"DISTTEST_RETRY_BACKOFF": "2"})
        self.assertEqual((config.host, config.startup_retries, config.retry_backoff),
                         ("127.0.0.3", 5, 2.0))


class ProjectRootTest(ConfigTestCase):
    def test_found_walking_up_from_a_subdirectory(self):
        self.write("disttest.toml", "default_cluster_size = 6\n")
        os.makedirs(os.path.join(self.root, "src", "pkg", "deep"))
        config = self.load(os.path.join("src", "pkg", "deep"))
        self.assertEqual(config.project_root, self.root)
        self.assertEqual(config.default_cluster_size, 6)

    def test_the_nearest_configured_directory_wins_alone(self):
        self.write("disttest.toml", "default_cluster_size = 6\nstartup_retries = 9\n")
        self.write("inner/pyproject.toml", "[tool.disttest]\ndefault_cluster_size = 2\n")
        config = self.load("inner")
        self.assertEqual(config.project_root, os.path.join(self.root, "inner"))
        self.assertEqual(config.default_cluster_size, 2)
        self.assertEqual(config.startup_retries, 2)  # the outer file is not read at all
        self.assertEqual(len(config.config_files), 1)

    def test_files_without_a_disttest_table_do_not_make_a_root(self):
        self.write("disttest.toml", "startup_retries = 7\n")
        self.write("inner/pyproject.toml", "[project]\nname = 'x'\n")
        self.write("inner/setup.cfg", "[metadata]\nname = x\n")
        self.write("inner/tox.ini", "[tox]\nenvlist = py311\n")
        config = self.load("inner")
        self.assertEqual(config.project_root, self.root)
        self.assertEqual(config.startup_retries, 7)

    def test_without_configuration_the_root_is_the_nearest_project_marker(self):
        for marker in ("pyproject.toml", "setup.cfg", "tox.ini", ".git"):
            with self.subTest(marker=marker):
                project = os.path.join(self.root, marker.strip(".") + "-project")
                os.makedirs(os.path.join(project, "a", "b"))
                if marker == ".git":
                    os.mkdir(os.path.join(project, ".git"))
                else:
                    self.write(os.path.join(project, marker), "[other]\nx = 1\n"
                               if marker != "pyproject.toml" else "[project]\nname = 'x'\n")
                config = self.load(os.path.join(project, "a", "b"))
                self.assertEqual(config.project_root, project)
                self.assertEqual(config.config_files, ())

    def test_broken_pyproject_that_does_not_configure_disttest_is_ignored(self):
        self.write("disttest.toml", "startup_retries = 7\n")
        self.write("inner/pyproject.toml", "[project\nname = \n")
        self.assertEqual(self.load("inner").startup_retries, 7)

    def test_missing_start_directory(self):
        message = self.load_error("does-not-exist")
        self.assertIn("does-not-exist", message)


class CIProfileTest(ConfigTestCase):
    def test_ci_table_is_ignored_without_ci(self):
        self.write("disttest.toml", "default_cluster_size = 4\n[ci]\ndefault_cluster_size = 2\n")
        config = self.load(ci=False)
        self.assertEqual(config.default_cluster_size, 4)
        self.assertFalse(config.ci)

    def test_ci_table_applies_with_ci_in_every_file_kind(self):
        cases = {
            "disttest.toml": ("startup_retries = 1\n[ci]\nstartup_retries = 6\n", "[ci]"),
            "pyproject.toml": ("[tool.disttest]\nstartup_retries = 1\n"
                               "[tool.disttest.ci]\nstartup_retries = 6\n",
                               "[tool.disttest.ci]"),
            "setup.cfg": ("[disttest:ci]\nstartup_retries = 6\n[disttest]\nstartup_retries = 1\n",
                          "[disttest:ci]"),
            "tox.ini": ("[disttest]\nstartup_retries = 1\n[disttest:ci]\nstartup_retries = 6\n",
                        "[disttest:ci]"),
        }
        for name, (text, table) in cases.items():
            with self.subTest(file=name):
                self.write(os.path.join(name + ".d", name), text)
                self.assertEqual(self.load(name + ".d", ci=False).startup_retries, 1)
                config = self.load(name + ".d", ci=True)
                self.assertEqual(config.startup_retries, 6)
                source = config.sources["startup_retries"]
                self.assertIn(f"{name} {table}", source)
                self.assertIn("CI profile", source)

    def test_ci_value_does_not_beat_a_higher_source(self):
        self.write("pyproject.toml", "[tool.disttest.ci]\nstartup_retries = 6\n")
        self.write("disttest.toml", "startup_retries = 1\n")
        self.assertEqual(self.load(ci=True).startup_retries, 1)
        self.write("disttest.toml", "host = '127.0.0.1'\n[ci]\nstartup_retries = 3\n")
        config = self.load(environ={"DISTTEST_STARTUP_RETRIES": "8"}, ci=True)
        self.assertEqual(config.startup_retries, 8)

    def test_ci_value_beats_a_lower_source(self):
        self.write("setup.cfg", "[disttest]\nstartup_retries = 1\n")
        self.write("pyproject.toml", "[tool.disttest.ci]\nstartup_retries = 6\n")
        self.assertEqual(self.load(ci=True).startup_retries, 6)

    def test_ci_max_cluster_size_caps_the_built_in_default(self):
        self.write("disttest.toml", "[ci]\nmax_cluster_size = 2\n")
        config = self.load(ci=True)
        self.assertEqual(config.max_cluster_size, 2)
        self.assertEqual(config.default_cluster_size, 2)
        self.assertIn("capped by max_cluster_size", config.sources["default_cluster_size"])
        self.assertEqual(self.load(ci=False).default_cluster_size, 3)

    def test_ci_cap_below_an_explicit_default_is_an_error_in_ci(self):
        self.write("disttest.toml", "default_cluster_size = 4\n[ci]\nmax_cluster_size = 2\n")
        self.assertEqual(self.load(ci=False).default_cluster_size, 4)
        message = self.load_error(ci=True)
        self.assertIn("default_cluster_size = 4", message)
        self.assertIn("max_cluster_size = 2", message)
        self.assertIn("disttest.toml [ci]", message)

    def test_ci_table_is_validated_even_without_ci(self):
        self.write("disttest.toml", "[ci]\nstartup_timeout = -1\n")
        self.assertIn("disttest.toml [ci]", self.load_error(ci=False))


class CIModeTest(ConfigTestCase):
    def test_detected_from_the_environment(self):
        config = self.load(environ=GITHUB, ci=None)
        self.assertTrue(config.ci)
        self.assertEqual(config.ci_provider, "GitHub Actions")
        self.assertEqual(config.effective_fallback, "fail")
        self.assertFalse(self.load(environ={}, ci=None).ci)

    def test_argument_beats_environment(self):
        config = self.load(environ={**GITHUB, "DISTTEST_CI": "1"}, ci=False)
        self.assertFalse(config.ci)
        self.assertIsNone(config.ci_provider)
        self.assertEqual(config.sources["ci"], "command line --no-ci")
        forced = self.load(environ={}, ci=True)
        self.assertTrue(forced.ci)
        self.assertIsNone(forced.ci_provider)
        self.assertEqual(forced.sources["ci"], "command line --ci")

    def test_disttest_ci_variable_beats_detection(self):
        self.assertFalse(self.load(environ={**GITHUB, "DISTTEST_CI": "0"}, ci=None).ci)
        config = self.load(environ={"DISTTEST_CI": "yes"}, ci=None)
        self.assertTrue(config.ci)
        self.assertEqual(config.sources["ci"], "environment DISTTEST_CI")

    def test_bad_disttest_ci_value(self):
        message = self.load_error(environ={"DISTTEST_CI": "sometimes"}, ci=None)
        self.assertIn("DISTTEST_CI", message)
        self.assertIn("'sometimes'", message)
        self.assertIn("1, true, yes or on (CI on), or 0, false, no or off (CI off)", message)

    def test_effective_fallback(self):
        self.assertEqual(self.load(ci=False).effective_fallback, "skip")
        self.assertEqual(self.load(ci=True).effective_fallback, "fail")
        config = self.load(cli={"fallback": "simulate"}, ci=True)
        self.assertEqual(config.effective_fallback, "simulate")


class TimeoutTest(ConfigTestCase):
    def test_timeouts_are_multiplied_in_ci_only(self):
        local, ci = self.load(ci=False), self.load(ci=True)
        self.assertEqual((local.startup_timeout, local.cleanup_timeout, local.call_timeout),
                         (30.0, 10.0, 30.0))
        self.assertEqual((ci.startup_timeout, ci.cleanup_timeout, ci.call_timeout),
                         (60.0, 20.0, 60.0))
        self.assertEqual(ci.sources["startup_timeout"], "default ×2 (CI)")
        self.assertEqual(local.sources["startup_timeout"], "default")
        self.assertEqual(ci.retry_backoff, 0.5)  # not a timeout

    def test_configured_multiplier_and_values(self):
        self.write("disttest.toml", "startup_timeout = 5\ntimeout_multiplier = 3\n")
        config = self.load(ci=True)
        self.assertEqual(config.startup_timeout, 15.0)
        self.assertEqual(config.cleanup_timeout, 30.0)
        self.assertIn("disttest.toml", config.sources["startup_timeout"])
        self.assertIn("×3 (CI)", config.sources["startup_timeout"])

    def test_zero_call_timeout_stays_disabled(self):
        config = self.load(environ={"DISTTEST_CALL_TIMEOUT": "0"}, ci=True)
        self.assertEqual(config.call_timeout, 0.0)
        self.assertEqual(config.sources["call_timeout"], "environment DISTTEST_CALL_TIMEOUT")

    def test_ci_table_values_are_taken_as_written(self):
        self.write("disttest.toml", "[ci]\nstartup_timeout = 100\n")
        config = self.load(ci=True)
        self.assertEqual(config.startup_timeout, 100.0)
        self.assertEqual(config.cleanup_timeout, 20.0)

    def test_multiplier_of_one_changes_nothing(self):
        config = self.load(cli={"timeout_multiplier": 1}, ci=True)
        self.assertEqual(config.startup_timeout, 30.0)
        self.assertEqual(config.sources["startup_timeout"], "default")


class UnknownKeyTest(ConfigTestCase):
    def assert_unknown(self, message: str, location: str, key: str, suggestion: str) -> None:
        self.assertIn(location, message)
        self.assertIn(f"unknown setting {key}", message)
        self.assertIn(f"did you mean {suggestion}?", message)
        listed = message.lower()  # the allowed keys are listed (as variables for env)
        self.assertIn("default_cluster_size, ", listed)
        self.assertIn("verbose_cluster_logs, ", listed)

    def test_in_disttest_toml(self):
        self.write("disttest.toml", "defualt_cluster_size = 3\n")
        self.assert_unknown(self.load_error(), "disttest.toml", "defualt_cluster_size",
                            "default_cluster_size")

    def test_in_disttest_toml_ci_table(self):
        self.write("disttest.toml", "[ci]\nstartup_timout = 3\n")
        self.assert_unknown(self.load_error(), "disttest.toml [ci]", "startup_timout",
                            "startup_timeout")

    def test_in_pyproject(self):
        self.write("pyproject.toml", "[tool.disttest]\nreuse_cluster = false\n")
        self.assert_unknown(self.load_error(), "pyproject.toml [tool.disttest]", "reuse_cluster",
                            "reuse_clusters")

    def test_in_pyproject_ci_table(self):
        self.write("pyproject.toml", "[tool.disttest.ci]\nmax_clustr_size = 3\n")
        self.assert_unknown(self.load_error(), "pyproject.toml [tool.disttest.ci]",
                            "max_clustr_size", "max_cluster_size")

    def test_in_setup_cfg(self):
        self.write("setup.cfg", "[disttest]\nport_ranges = 1-100\n")
        self.assert_unknown(self.load_error(), "setup.cfg [disttest]", "port_ranges",
                            "port_range")

    def test_in_tox_ini_ci_section(self):
        self.write("tox.ini", "[disttest:ci]\nfalback = fail\n")
        self.assert_unknown(self.load_error(), "tox.ini [disttest:ci]", "falback", "fallback")

    def test_in_environment(self):
        message = self.load_error(environ={"DISTTEST_DEFAULT_CLUSTER_SIZ": "3"})
        self.assert_unknown(message, "environment DISTTEST_DEFAULT_CLUSTER_SIZ",
                            "DISTTEST_DEFAULT_CLUSTER_SIZ", "DISTTEST_DEFAULT_CLUSTER_SIZE")

    def test_on_command_line(self):
        message = self.load_error(cli={"jnuit_xml": "x.xml"})
        self.assert_unknown(message, "command line --jnuit-xml", "jnuit_xml", "junit_xml")

    def test_without_a_close_match(self):
        self.write("disttest.toml", "colour = true\n")
        message = self.load_error()
        self.assertIn("unknown setting colour", message)
        self.assertNotIn("did you mean", message)

    def test_structured_fields(self):
        self.write("disttest.toml", "hots = 'x'\n")
        with self.assertRaises(ConfigError) as caught:
            self.load()
        self.assertEqual(caught.exception.key, "hots")
        self.assertEqual(caught.exception.suggestion, "hosts")
        self.assertTrue(caught.exception.source.endswith("disttest.toml"))

    def test_unknown_ini_sub_section(self):
        self.write("setup.cfg", "[disttest:nightly]\nstartup_retries = 3\n")
        message = self.load_error()
        self.assertIn("setup.cfg [disttest:nightly]", message)
        self.assertIn("[disttest:ci]", message)


class BadValueTest(ConfigTestCase):
    def assert_bad(self, message: str, location: str, key: str, shown: str, allowed: str):
        self.assertIn(location, message)
        self.assertIn(f"{key} = {shown}", message)
        self.assertIn(allowed, message)

    def test_port_ranges(self):
        cases = {
            "70000-70010": "from 1 to 65535",
            "abc": "two port numbers",
            "10-5": "reversed",
            "a-b": "whole numbers",
            "0-100": "from 1 to 65535",
            "1-2-3": "two port numbers",
        }
        for value, reason in cases.items():
            with self.subTest(value=value):
                message = self.load_error(environ={"DISTTEST_PORT_RANGE": value})
                self.assert_bad(message, "environment DISTTEST_PORT_RANGE", "port_range",
                                repr(value), "LOW-HIGH")
                self.assertIn(reason, message)

    def test_port_range_list_must_have_two_ports(self):
        self.write("disttest.toml", "port_range = [20000, 20100, 20200]\n")
        self.assertIn("two port numbers", self.load_error())
        self.write("disttest.toml", "port_range = 20000\n")
        self.assertIn("port_range = 20000", self.load_error())

    def test_port_range_smaller_than_max_cluster_size(self):
        self.write("disttest.toml", 'port_range = "20000-20004"\n')
        message = self.load_error()
        self.assertIn('port_range = "20000-20004"', message)
        self.assertIn("holds 5 port(s)", message)
        self.assertIn("max_cluster_size = 16 (default)", message)
        self.assertIn("disttest.toml", message)
        config = self.load(environ={"DISTTEST_MAX_CLUSTER_SIZE": "5"})
        self.assertEqual(config.port_range, (20000, 20004))

    def test_negative_and_zero_timeouts(self):
        self.write("disttest.toml", "startup_timeout = -5\n")
        self.assert_bad(self.load_error(), "disttest.toml", "startup_timeout", "-5",
                        "a number of seconds > 0")
        self.write("disttest.toml", "cleanup_timeout = 0\n")
        self.assert_bad(self.load_error(), "disttest.toml", "cleanup_timeout", "0", "> 0")
        self.write("disttest.toml", "call_timeout = -1\n")
        self.assert_bad(self.load_error(), "disttest.toml", "call_timeout", "-1",
                        "0 = none")
        self.write("disttest.toml", "call_timeout = 0\n")
        self.assertEqual(self.load().call_timeout, 0.0)

    def test_timeout_that_is_not_a_number(self):
        message = self.load_error(environ={"DISTTEST_STARTUP_TIMEOUT": "soon"})
        self.assert_bad(message, "environment DISTTEST_STARTUP_TIMEOUT", "startup_timeout",
                        "'soon'", "a number of seconds")
        self.assertIn("'inf'", self.load_error(environ={"DISTTEST_STARTUP_TIMEOUT": "inf"}))

    def test_cluster_size_zero_and_fractional(self):
        self.write("setup.cfg", "[disttest]\ndefault_cluster_size = 0\n")
        self.assert_bad(self.load_error(), "setup.cfg [disttest]", "default_cluster_size",
                        "'0'", "a whole number > 0")
        self.write("setup.cfg", "[disttest]\ndefault_cluster_size = 2.5\n")
        self.assertIn("'2.5'", self.load_error())
        self.write("setup.cfg", "[disttest]\ndefault_cluster_size = true\n")
        self.assertIn("'true'", self.load_error())

    def test_toml_types_are_checked(self):
        for line, shown in (("default_cluster_size = true", "True"),
                            ("default_cluster_size = 2.0", "2.0"),
                            ("host = 5", "5"), ("host = ''", "''"),
                            ("startup_timeout = 1979-05-27", "datetime.date(1979, 5, 27)"),
                            ("auto_cluster = 'perhaps'", "'perhaps'"),
                            ("reuse_clusters = [true]", "[True]"),
                            ("junit_xml = {path = 'x'}", "{'path': 'x'}")):
            with self.subTest(line=line):
                self.write("disttest.toml", line + "\n")
                message = self.load_error()
                self.assertIn(line.split(" = ")[0] + " = " + shown, message)

    def test_bad_bool(self):
        self.write("tox.ini", "[disttest]\nreuse_clusters = maybe\n")
        self.assert_bad(self.load_error(), "tox.ini [disttest]", "reuse_clusters", "'maybe'",
                        "true or false")
        os.remove(os.path.join(self.root, "tox.ini"))
        message = self.load_error(environ={"DISTTEST_VERBOSE_CLUSTER_LOGS": "2"})
        self.assertIn("environment DISTTEST_VERBOSE_CLUSTER_LOGS", message)

    def test_bad_fallback(self):
        message = self.load_error(cli={"fallback": "retry"})
        self.assert_bad(message, "command line --fallback", "fallback", "'retry'",
                        "one of skip, reduce, simulate, fail")

    def test_default_size_above_max_size(self):
        self.write("disttest.toml", "default_cluster_size = 8\n")
        message = self.load_error(environ={"DISTTEST_MAX_CLUSTER_SIZE": "4"})
        self.assertIn("default_cluster_size = 8", message)
        self.assertIn("max_cluster_size = 4 (environment DISTTEST_MAX_CLUSTER_SIZE)", message)

    def test_error_has_structured_fields_and_a_fix(self):
        with self.assertRaises(ConfigError) as caught:
            self.load(environ={"DISTTEST_STARTUP_RETRIES": "-1"})
        error = caught.exception
        self.assertEqual((error.key, error.value), ("startup_retries", "-1"))
        self.assertEqual(error.source, "environment DISTTEST_STARTUP_RETRIES")
        self.assertTrue(error.diagnosis.steps)
        self.assertIn("fix:", error.diagnosis.render())

    def test_ci_must_be_a_table(self):
        self.write("disttest.toml", "ci = true\n")
        self.assertIn("must be a table", self.load_error())
        self.write("pyproject.toml", "[tool]\ndisttest = 3\n")
        os.remove(os.path.join(self.root, "disttest.toml"))
        self.assertIn("pyproject.toml [tool.disttest] must be a table", self.load_error())


class MalformedFileTest(ConfigTestCase):
    def test_malformed_disttest_toml(self):
        self.write("disttest.toml", "default_cluster_size = 3\nhost = \n")
        message = self.load_error()
        self.assertIn("disttest.toml", message)
        self.assertIn("not valid TOML", message)
        self.assertIn("line 2", message)

    def test_malformed_pyproject_that_configures_disttest(self):
        self.write("pyproject.toml", "[tool.disttest\nstartup_retries = 1\n")
        message = self.load_error()
        self.assertIn("pyproject.toml", message)
        self.assertIn("line 1", message)

    def test_malformed_setup_cfg_with_a_disttest_section(self):
        self.write("setup.cfg", "[disttest]\nstartup_retries = 1\nthis line is broken\n")
        message = self.load_error()
        self.assertIn("setup.cfg", message)
        self.assertIn("not valid INI", message)
        self.assertIn("line", message)

    def test_file_that_is_not_utf8(self):
        with open(os.path.join(self.root, "disttest.toml"), "wb") as f:
            f.write(b"host = '\xff\xfe'\n")
        message = self.load_error()
        self.assertIn("disttest.toml", message)
        self.assertIn("cannot be read", message)


class StatePathTest(ConfigTestCase):
    def test_configured_directory_is_created_private(self):
        target = os.path.join(self.root, "state", "disttest")
        path = Config(state_dir=target).state_path()
        self.assertEqual(str(path), target)
        self.assertTrue(path.is_dir())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o700)

    def test_default_comes_from_platformdirs(self):
        target = os.path.join(self.root, "platform-state")
        with mock.patch("platformdirs.user_state_dir", return_value=target) as user_state_dir:
            path = Config().state_path()
        user_state_dir.assert_called_once_with("disttest")
        self.assertEqual(str(path), target)
        self.assertTrue(path.is_dir())

    def test_unusable_directory_is_a_config_error(self):
        blocker = self.write("file", "not a directory\n")
        config = self.load(environ={"DISTTEST_STATE_DIR": os.path.join(blocker, "state")})
        with self.assertRaises(ConfigError) as caught:
            config.state_path()
        self.assertIn("environment DISTTEST_STATE_DIR", str(caught.exception))


class ReplaceTest(unittest.TestCase):
    def test_replace_returns_a_new_config_and_marks_the_source(self):
        config = Config()
        changed = config.replace(default_cluster_size=5)
        self.assertEqual(changed.default_cluster_size, 5)
        self.assertEqual(config.default_cluster_size, 3)
        self.assertEqual(changed.sources["default_cluster_size"], "set by code")
        self.assertEqual(changed.sources["host"], "default")


class FormatConfigTest(ConfigTestCase):
    def test_text_form(self):
        self.write("pyproject.toml", "[tool.disttest]\ndefault_cluster_size = 5\n")
        config = self.load(environ={**GITHUB, "DISTTEST_FALLBACK": "reduce"}, ci=None)
        text = format_config(config)
        lines = text.splitlines()
        self.assertEqual(lines[0], f"project root: {self.root}")
        self.assertIn("pyproject.toml", lines[1])
        self.assertEqual(lines[2], "CI:           GitHub Actions")
        settings = [line for line in lines[3:] if line]
        self.assertEqual([line.split()[0] for line in settings], list(KEYS))
        self.assertEqual(len({line.index(" = ") for line in settings}), 1)  # aligned
        self.assertEqual(len({line.index("  (") for line in settings}), 1)
        by_key = {line.split()[0]: line for line in settings}
        self.assertIn("= 5 ", by_key["default_cluster_size"])
        self.assertTrue(by_key["default_cluster_size"].endswith(
            "pyproject.toml [tool.disttest])"))
        self.assertIn("= reduce ", by_key["fallback"])
        self.assertIn("(environment DISTTEST_FALLBACK)", by_key["fallback"])
        self.assertIn("= 60 ", by_key["startup_timeout"])
        self.assertIn("(default ×2 (CI))", by_key["startup_timeout"])
        self.assertIn("= 20000-29999 ", by_key["port_range"])
        self.assertIn("= true ", by_key["auto_cluster"])
        self.assertIn("(not set)", by_key["junit_xml"])

    def test_text_form_without_ci(self):
        text = format_config(self.load(environ={}, ci=None))
        self.assertIn("CI:           not detected", text)
        self.assertIn("files read:   none", text)
        self.assertIn("auto (skip outside CI)", text)
        forced_off = format_config(self.load(environ=GITHUB, ci=False))
        self.assertIn("CI:           off (command line --no-ci)", forced_off)

    def test_json_form(self):
        self.write("disttest.toml", 'port_range = "30000-30100"\n')
        config = self.load(environ=GITHUB, ci=None)
        data = json.loads(format_config(config, as_json=True))
        self.assertEqual(data["project_root"], self.root)
        self.assertIs(data["ci"], True)
        self.assertEqual(data["ci_provider"], "GitHub Actions")
        self.assertEqual(data["files"], [os.path.join(self.root, "disttest.toml")])
        self.assertEqual(list(data["settings"]), list(KEYS))
        self.assertEqual(data["settings"]["port_range"]["value"], [30000, 30100])
        self.assertTrue(data["settings"]["port_range"]["source"].endswith("disttest.toml"))
        self.assertEqual(data["settings"]["startup_timeout"],
                         {"value": 60.0, "source": "default ×2 (CI)"})
        self.assertIsNone(data["settings"]["fallback"]["value"])
        self.assertEqual(data["effective_fallback"], "fail")


if __name__ == "__main__":
    unittest.main()
