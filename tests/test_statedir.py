"""Without a usable home directory, state goes to a private directory under tmp.

A container run under an arbitrary uid may have no home (``HOME`` unset, no
passwd entry) or a ``HOME`` that cannot hold a directory; cluster tests must
still run, and the fallback directory, which sits in a place every user can
write, must be refused when it is not provably this user's own.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from tests.test_runner_e2e import SAMPLES, clean_environ


class NoHome(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="disttest-nohome-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.project = self.tmp / "project"
        shutil.copytree(SAMPLES / "freeing", self.project,
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.own_tmp = self.tmp / "tmp"   # TMPDIR of the run: its shared temp directory
        self.own_tmp.mkdir()
        self.home = self.tmp / "home-is-a-file"
        self.home.write_text("not a directory\n")
        self.fallback = self.own_tmp / f"disttest-{os.getuid()}"

    def run_disttest(self, *args) -> subprocess.CompletedProcess:
        env = clean_environ({"HOME": str(self.home), "TMPDIR": str(self.own_tmp),
                             "XDG_STATE_HOME": ""})
        env.pop("XDG_STATE_HOME")
        return subprocess.run([sys.executable, "-m", "disttest", *args], cwd=self.project,
                              env=env, capture_output=True, text=True, timeout=120)

    def test_cluster_tests_run_without_a_home(self):
        run = self.run_disttest("discover", "-s", "tests", "-t", ".")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertRegex(run.stderr, r"(?m)^Ran 63 tests")
        self.assertNotIn("home directory", run.stderr)

    def test_kept_clusters_are_recorded_under_tmp(self):
        run = self.run_disttest("discover", "-s", "tests", "-t", ".", "-p", "test_cluster.py",
                                "--keep-cluster")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.addCleanup(self.run_disttest, "cluster", "stop", "--all")
        info = os.lstat(self.fallback)
        self.assertTrue(stat.S_ISDIR(info.st_mode))
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o700)
        self.assertEqual(info.st_uid, os.getuid())
        self.assertEqual(len(list((self.fallback / "clusters").glob("*.json"))), 1,
                         list(self.fallback.rglob("*")))
        status = self.run_disttest("cluster", "status")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertRegex(status.stdout, r"(?m)^  c\d+-[0-9a-f]{4} +1 .* 1/1 ")
        stop = self.run_disttest("cluster", "stop", "--all")
        self.assertEqual(stop.returncode, 0, stop.stderr)
        self.assertEqual(list((self.fallback / "clusters").glob("*.json")), [])

    def test_config_names_the_fallback(self):
        run = self.run_disttest("config")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn(str(self.fallback), run.stdout)

    def assert_refused(self, run: subprocess.CompletedProcess, why: str) -> None:
        self.assertNotEqual(run.returncode, 0, run.stderr)
        self.assertIn(str(self.fallback), run.stderr)
        self.assertIn(why, run.stderr)
        self.assertIn("DISTTEST_STATE_DIR", run.stderr)
        self.assertNotIn("Traceback", run.stderr)

    def test_a_planted_link_is_refused(self):
        target = self.tmp / "someone-elses"
        target.mkdir(mode=0o700)
        os.symlink(target, self.fallback)
        run = self.run_disttest("discover", "-s", "tests", "-t", ".", "-p", "test_cluster.py")
        self.assert_refused(run, "is a symbolic link")
        self.assertEqual(list(target.iterdir()), [])

    def test_a_directory_open_to_others_is_refused(self):
        self.fallback.mkdir()
        os.chmod(self.fallback, 0o777)
        run = self.run_disttest("discover", "-s", "tests", "-t", ".", "-p", "test_cluster.py")
        self.assert_refused(run, "is open to other users (mode 0777)")

    @unittest.skipUnless(hasattr(os, "geteuid") and os.geteuid() == 0,
                         "making a directory another user's needs root")
    def test_another_users_directory_is_refused(self):
        self.fallback.mkdir(mode=0o700)
        os.chown(self.fallback, 54321, 54321)
        run = self.run_disttest("discover", "-s", "tests", "-t", ".", "-p", "test_cluster.py")
        self.assert_refused(run, "belongs to another user (uid 54321)")


if __name__ == "__main__":
    unittest.main()
