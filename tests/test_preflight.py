"""``python -m disttest preflight``: passes here, fails with a fix when ports run out.

Each check runs in a subprocess from an empty directory (no project
configuration), with its own state directory.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unittest

from disttest.config import load_config
from disttest.preflight import render, run_checks
from tests import support
from tests.test_failures import free_range, listen_on

LINE = re.compile(r"^(OK|WARN|FAIL)\s{2,}(\S+(?: \S+)?)\s{2,}(.*)$")
FIX = re.compile(r"^\s+fix: (.+)$")
# The checks every machine gets, in this order (a newer check may come between them).
CHECKS = ["host", "node", "ports", "memory", "cpus", "open files", "processes",
          "state directory", "netns", "ci"]


def core(names: list[str]) -> list[str]:
    return [name for name in names if name in CHECKS]


def tearDownModule():
    support.shutdown_and_check()


def parse(stdout: str) -> tuple[list[tuple[str, str, str, str]], str]:
    """(status, check, detail, fix) per check, and the closing line."""
    lines = stdout.rstrip("\n").splitlines()
    checks: list[list[str]] = []
    for line in lines[:-1]:
        match, fix = LINE.match(line), FIX.match(line)
        if match:
            checks.append([*match.groups(), ""])
        elif fix and checks:
            checks[-1][3] = fix.group(1)
        elif line.startswith("      ") and checks and not checks[-1][3]:
            checks[-1][2] += "\n" + line.strip()  # the detail goes on
        else:
            raise AssertionError(f"unexpected preflight line {line!r} in:\n{stdout}")
    return [tuple(c) for c in checks], lines[-1]


class Preflight(unittest.TestCase):

    def setUp(self):
        self.cwd = tempfile.mkdtemp(prefix="disttest-tests-preflight-")
        self.addCleanup(shutil.rmtree, self.cwd, True)
        self.addCleanup(support.assert_no_leaks)

    def preflight(self, *args, env=None):
        clean = {k: "" for k in os.environ if k.startswith("DISTTEST_")
                 and k not in ("DISTTEST_CI", "DISTTEST_STATE_DIR")}
        return support.run_python(["-m", "disttest", "preflight", *args], cwd=self.cwd,
                                  env={**clean, **(env or {})}, timeout=120)

    def tiny_range(self):
        """Four ports, every one of them listened on by this test process."""
        low, high = free_range(4)
        listen_on(self, range(low, high + 1))
        return low, high, {"DISTTEST_PORT_RANGE": f"{low}-{high}",
                           "DISTTEST_MAX_CLUSTER_SIZE": "2"}

    def test_passes_on_this_machine(self):
        proc = self.preflight()
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        checks, last = parse(proc.stdout)
        self.assertEqual(core([c[1] for c in checks]), CHECKS)
        self.assertEqual({c[0] for c in checks} - {"OK", "WARN"}, set(), proc.stdout)
        self.assertEqual(last, "preflight: all checks passed")
        node = dict((c[1], c[2]) for c in checks)["node"]
        self.assertRegex(node, r"started a node that answered in \d+\.\d ms")
        self.assertEqual(proc.stderr, "")

    def test_fails_and_names_the_fix_and_the_holders_when_ports_run_out(self):
        low, high, env = self.tiny_range()
        proc = self.preflight(env=env)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        checks, last = parse(proc.stdout)
        by_name = {c[1]: c for c in checks}
        status, _, detail, fix = by_name["ports"]
        self.assertEqual(status, "FAIL")
        self.assertTrue(detail.startswith(f"0 free port(s) in port_range {low}-{high}"), detail)
        for port in range(low, high + 1):
            self.assertIn(f"{port} listened on by pid {os.getpid()}", detail)
        self.assertIn("at least 4 wanted (2 per node of max_cluster_size 2)", detail)
        self.assertRegex(fix, rf'^widen port_range, e\.g\. port_range = "{low}-\d+"')
        self.assertIn("python -m disttest cluster clean", fix)
        # the node check could not get a port either, and says why
        status, _, detail, fix = by_name["node"]
        self.assertEqual(status, "FAIL")
        self.assertIn(f"port_range {low}-{high} has only 0 free port(s), 1 needed", detail)
        self.assertIn(f"{low} listened on by pid {os.getpid()}", detail)
        self.assertTrue(fix.startswith("widen port_range"), fix)
        self.assertEqual(last, "preflight: 2 check(s) failed")

    def test_json_output(self):
        proc = self.preflight("--json")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        document = json.loads(proc.stdout)
        self.assertIs(document["ok"], True)
        self.assertEqual(core([c["name"] for c in document["checks"]]), CHECKS)
        for check in document["checks"]:
            self.assertEqual(set(check), {"name", "status", "detail", "fix"})
            self.assertIn(check["status"], ("ok", "warn"))
        low, high, env = self.tiny_range()
        proc = self.preflight("--json", env=env)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        document = json.loads(proc.stdout)
        self.assertIs(document["ok"], False)
        failed = {c["name"]: c for c in document["checks"] if c["status"] == "fail"}
        self.assertEqual(sorted(failed), ["node", "ports"])
        self.assertIn("widen port_range", failed["ports"]["fix"])

    def test_a_host_that_does_not_resolve_is_a_warning_not_a_failure(self):
        proc = self.preflight(env={"DISTTEST_HOST": "no-such-host.invalid"})
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        checks, _ = parse(proc.stdout)
        by_name = {c[1]: c for c in checks}
        self.assertEqual(by_name["host"][0], "WARN")
        self.assertIn("falling back to 127.0.0.1", by_name["host"][2])
        self.assertEqual(by_name["host"][3], 'set host to an IP address, e.g. host = "127.0.0.1"')
        # ports are checked on the address nodes will use, not on the name
        self.assertEqual(by_name["ports"][0], "OK", proc.stdout)
        self.assertEqual(by_name["node"][0], "OK", proc.stdout)

    @unittest.skipUnless(os.path.exists("/proc/sys/net/ipv4/ip_local_port_range"),
                         "the kernel's ephemeral port range is read from Linux's /proc")
    def test_a_range_among_the_ephemeral_ports_is_a_warning(self):
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            first, last = map(int, f.read().split())
        low = first + 1000
        proc = self.preflight(env={"DISTTEST_PORT_RANGE": f"{low}-{low + 499}"})
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        checks, _ = parse(proc.stdout)
        status, _, detail, fix = {c[1]: c for c in checks}["ports"]
        self.assertEqual(status, "WARN", proc.stdout)
        self.assertIn(f"overlaps the kernel's ephemeral ports {first}-{last}", detail)
        self.assertIn(f"choose a port_range outside {first}-{last}", fix)

    def test_a_bad_setting_is_a_configuration_error(self):
        proc = self.preflight(env={"DISTTEST_PORT_RANGE": "30010-30000"})
        self.assertEqual(proc.returncode, 2, proc.stdout + proc.stderr)
        self.assertIn("the range is reversed: 30010 is above 30000", proc.stderr)
        self.assertEqual(proc.stdout, "")


class PreflightInProcess(unittest.TestCase):

    def test_render_marks_each_failed_check_with_its_fix(self):
        config = load_config(support.REPO).replace(state_dir=support.STATE_DIR)
        checks = run_checks(config)
        self.addCleanup(support.assert_no_leaks)
        text = render(checks)
        self.assertTrue(text.endswith("preflight: all checks passed"), text)
        failing = [type(checks[0])("ports", "fail", "0 free", "widen port_range")] + checks[1:]
        text = render(failing)
        self.assertRegex(text, r"(?m)^FAIL  ports\s+0 free\n\s+fix: widen port_range$")
        self.assertTrue(text.endswith("preflight: 1 check(s) failed"))
        # a detail of several lines goes on under its check, never at a line's start
        failing[0] = type(checks[0])("node", "fail", "exited\nTraceback\nOSError", "read it")
        lines = render(failing).splitlines()
        self.assertEqual([line.strip() for line in lines[:4]],
                         ["FAIL  node             exited", "Traceback", "OSError", "fix: read it"])
        self.assertTrue(all(line.startswith(" " * 23) for line in lines[1:4]), lines)


if __name__ == "__main__":
    unittest.main()
