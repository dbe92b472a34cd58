"""A new user's first minutes: a clean copy, a fresh venv, the README's two commands.

The Quick start commands are read from README.md, not repeated here, so the
README cannot promise what does not work. The second command runs this
project's own tests in the fresh environment, limited to one module (the
public API's): the whole suite from a fresh environment is what CI does
(.ci/run), and doing it here again would double every run. The inner run
skips this module (DTTESTS_NEWCOMER_INNER) so it never recurses.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INNER = "DTTESTS_NEWCOMER_INNER"


def quick_start_commands() -> list:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def tracked_files() -> list:
    done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return []
    return [line for line in done.stdout.splitlines() if line]


@unittest.skipIf(os.environ.get(INNER), "inside the newcomer run itself")
class NewcomerTest(unittest.TestCase):
    def test_readme_has_exactly_two_quick_start_commands(self):
        commands = quick_start_commands()
        self.assertEqual(len(commands), 2, commands)
        self.assertIn("discover -s examples", commands[0])
        self.assertIn("discover -s tests", commands[1])

    @unittest.skipUnless(shutil.which("git") and tracked_files(), "needs a git checkout")
    def test_quick_start_works_in_a_fresh_environment(self):
        with tempfile.TemporaryDirectory() as tmp:
            clone = Path(tmp, "disttest")
            for name in tracked_files():
                target = clone / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / name).exists():
                    shutil.copy2(ROOT / name, target)
            venv = Path(tmp, "venv")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            env = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CI", "GITHUB_ACTIONS")}
            env.update({"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                        "VIRTUAL_ENV": str(venv), INNER: "1", "NO_COLOR": "1",
                        "DISTTEST_STATE_DIR": str(Path(tmp, "state"))})
            first, second = quick_start_commands()

            done = subprocess.run(first, shell=True, cwd=clone, env=env, capture_output=True,
                                  text=True, timeout=900, stdin=subprocess.DEVNULL)
            self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
            # What the README says this prints: unittest's verdict, then the cluster summary.
            self.assertIn("OK", done.stderr)
            self.assertIn("Cluster usage", done.stderr)
            self.assertRegex(done.stderr, r"disttest: \d+ passed, 0 failed")
            installed = subprocess.run(
                ["python", "-c", "import disttest, os; print(os.path.dirname(disttest.__file__))"],
                cwd=tmp, env=env, capture_output=True, text=True)
            self.assertIn(str(venv), installed.stdout)  # the installed copy, not the source

            self.assertIn("discover -s tests -t .", second)
            done = subprocess.run(second + " -p test_api_reference.py", shell=True, cwd=clone,
                                  env=env, capture_output=True, text=True, timeout=900,
                                  stdin=subprocess.DEVNULL)
            self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
            self.assertRegex(done.stderr, r"Ran [1-9]\d* tests")


if __name__ == "__main__":
    unittest.main()
