"""Unit tests for disttest.environment: CI detection, host resolution, resources."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import unittest
from unittest import mock

from disttest.environment import (CI_PROVIDERS, MachineResources, detect_ci, fit_cluster,
                                  format_bytes, machine_resources, resolve_host)

MiB = 2 ** 20
GiB = 2 ** 30


class DetectCITest(unittest.TestCase):
    EXPECTED = {
        "GITHUB_ACTIONS": "GitHub Actions",
        "GITLAB_CI": "GitLab CI",
        "JENKINS_URL": "Jenkins",
        "BUILDKITE": "Buildkite",
        "CIRCLECI": "CircleCI",
        "TRAVIS": "Travis CI",
        "TF_BUILD": "Azure Pipelines",
        "TEAMCITY_VERSION": "TeamCity",
        "BITBUCKET_BUILD_NUMBER": "Bitbucket Pipelines",
        "APPVEYOR": "AppVeyor",
        "DRONE": "Drone",
        "CODEBUILD_BUILD_ID": "AWS CodeBuild",
        "CI": "CI",
    }

    def test_each_provider_is_detected_from_its_variable(self):
        for variable, provider in self.EXPECTED.items():
            with self.subTest(variable=variable):
                self.assertEqual(detect_ci({variable: "true"}), provider)

    def test_every_listed_provider_is_detected(self):
        for variable, provider in CI_PROVIDERS.items():
            with self.subTest(variable=variable):
                self.assertEqual(detect_ci({variable: "1"}), provider)

    def test_generic_ci_variable_comes_last(self):
        self.assertEqual(list(CI_PROVIDERS)[-1], "CI")
        self.assertEqual(detect_ci({"CI": "true", "GITHUB_ACTIONS": "true"}), "GitHub Actions")
        self.assertEqual(detect_ci({"CI": "true", "GITLAB_CI": "true"}), "GitLab CI")

    def test_no_variables_means_no_ci(self):
        self.assertIsNone(detect_ci({}))
        self.assertIsNone(detect_ci({"HOME": "/home/me", "PATH": "/usr/bin"}))

    def test_false_looking_values_do_not_count(self):
        for value in ("", "0", "false", "FALSE", "no", "No", "off", " off "):
            with self.subTest(value=value):
                self.assertIsNone(detect_ci({"CI": value}))
                self.assertIsNone(detect_ci({"GITHUB_ACTIONS": value}))

    def test_any_other_non_empty_value_counts(self):
        self.assertEqual(detect_ci({"JENKINS_URL": "https://ci.example.com/"}), "Jenkins")
        self.assertEqual(detect_ci({"TEAMCITY_VERSION": "2023.05"}), "TeamCity")
        self.assertEqual(detect_ci({"CODEBUILD_BUILD_ID": "proj:1234"}), "AWS CodeBuild")
        self.assertEqual(detect_ci({"CI": "woodpecker"}), "CI")

    def test_a_false_specific_variable_falls_through_to_generic(self):
        self.assertEqual(detect_ci({"GITHUB_ACTIONS": "false", "CI": "true"}), "CI")

    def test_defaults_to_os_environ(self):
        with mock.patch.dict(os.environ, {"GITLAB_CI": "true"}, clear=True):
            self.assertEqual(detect_ci(), "GitLab CI")


class ResolveHostTest(unittest.TestCase):
    def test_ipv4_literal_is_returned_unchanged(self):
        self.assertEqual(resolve_host("127.0.0.1"), ("127.0.0.1", None))
        self.assertEqual(resolve_host("10.1.2.3"), ("10.1.2.3", None))

    def test_ipv6_literal_is_returned_unchanged(self):
        self.assertEqual(resolve_host("::1"), ("::1", None))
        self.assertEqual(resolve_host("[::1]"), ("::1", None))

    def test_literal_does_not_touch_the_resolver(self):
        with mock.patch("socket.getaddrinfo", side_effect=AssertionError("resolver used")):
            self.assertEqual(resolve_host("192.168.0.7"), ("192.168.0.7", None))

    def test_localhost_resolves_to_a_loopback_address(self):
        address, warning = resolve_host("localhost")
        self.assertIsNone(warning)
        self.assertIn(address, ("127.0.0.1", "::1"))

    def test_ipv4_is_preferred_over_ipv6(self):
        infos = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0)),
                 (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", 0))]
        with mock.patch("socket.getaddrinfo", return_value=infos):
            self.assertEqual(resolve_host("dual.example"), ("127.0.0.2", None))

    def test_ipv6_is_used_when_there_is_no_ipv4(self):
        infos = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1", 0, 0, 0))]
        with mock.patch("socket.getaddrinfo", return_value=infos):
            self.assertEqual(resolve_host("v6only.example"), ("fe80::1", None))

    def test_unresolvable_name_falls_back_with_a_warning(self):
        address, warning = resolve_host("no-such-host.invalid")
        self.assertEqual(address, "127.0.0.1")
        self.assertIsNotNone(warning)
        self.assertIn("no-such-host.invalid", warning)
        self.assertIn("falling back to 127.0.0.1", warning)
        self.assertIn("Set `host` to an IP address", warning)

    def test_warning_carries_the_resolver_error(self):
        error = socket.gaierror(-2, "Name or service not known")
        with mock.patch("socket.getaddrinfo", side_effect=error):
            address, warning = resolve_host("db.internal")
        self.assertEqual(address, "127.0.0.1")
        self.assertIn("Name or service not known", warning)
        self.assertIn("'db.internal'", warning)

    def test_invalid_idna_name_does_not_raise(self):
        address, warning = resolve_host("a" * 300 + ".example")
        self.assertEqual(address, "127.0.0.1")
        self.assertIsNotNone(warning)


class MachineResourcesTest(unittest.TestCase):
    def test_measures_plausible_figures(self):
        resources = machine_resources()
        self.assertIsInstance(resources, MachineResources)
        self.assertGreaterEqual(resources.cpus, 1)
        self.assertGreater(resources.total_memory, 16 * MiB)
        self.assertGreaterEqual(resources.available_memory, 0)
        self.assertLessEqual(resources.available_memory, resources.total_memory)

    def test_is_frozen(self):
        resources = MachineResources(cpus=2, total_memory=GiB, available_memory=GiB)
        with self.assertRaises(AttributeError):
            resources.cpus = 4  # type: ignore[misc]

    def test_importing_does_not_load_psutil_or_platformdirs(self):
        code = ("import sys, disttest\n"
                "before = {m for m in ('psutil', 'platformdirs') if m in sys.modules}\n"
                "import disttest.environment, disttest.config\n"
                "after = {m for m in ('psutil', 'platformdirs') if m in sys.modules}\n"
                "print(sorted(after - before))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)


class FitClusterTest(unittest.TestCase):
    RESOURCES = MachineResources(cpus=4, total_memory=8 * GiB, available_memory=2 * GiB)

    def test_fits_when_below_available_minus_reserve(self):
        # 2 GiB available, 20% reserve -> 1.6 GiB usable; 10 x 150 MiB = 1.46 GiB
        self.assertIsNone(fit_cluster(10, 150 * MiB, self.RESOURCES))

    def test_exact_fit_is_accepted(self):
        resources = MachineResources(cpus=1, total_memory=GiB, available_memory=1000 * MiB)
        self.assertIsNone(fit_cluster(8, 100 * MiB, resources))  # 800 MiB usable exactly

    def test_too_many_nodes_are_refused_with_the_figures(self):
        message = fit_cluster(12, 150 * MiB, self.RESOURCES)
        self.assertIsNotNone(message)
        self.assertIn("12 nodes", message)
        self.assertIn("150.0 MiB estimated per node", message)
        self.assertIn("1.8 GiB", message)          # needed: 12 x 150 MiB
        self.assertIn("1.6 GiB is usable", message)
        self.assertIn("2.0 GiB available", message)
        self.assertIn("20% in reserve", message)
        self.assertIn("swap", message)             # why it matters

    def test_reserve_fraction_is_honoured(self):
        self.assertIsNone(fit_cluster(12, 150 * MiB, self.RESOURCES, reserve_fraction=0.0))
        message = fit_cluster(10, 150 * MiB, self.RESOURCES, reserve_fraction=0.5)
        self.assertIn("50% in reserve", message)

    def test_no_available_memory_refuses_any_cluster(self):
        resources = MachineResources(cpus=1, total_memory=GiB, available_memory=0)
        self.assertIsNotNone(fit_cluster(1, MiB, resources))


class FormatBytesTest(unittest.TestCase):
    def test_units(self):
        self.assertEqual(format_bytes(512), "512 B")
        self.assertEqual(format_bytes(1536), "1.5 KiB")
        self.assertEqual(format_bytes(150 * MiB), "150.0 MiB")
        self.assertEqual(format_bytes(1536 * MiB), "1.5 GiB")
        self.assertEqual(format_bytes(3 * 1024 * GiB), "3.0 TiB")


if __name__ == "__main__":
    unittest.main()
