"""Every ```python block in README.md and docs/ runs, so the docs cannot drift.

Blocks that define test classes are run with ``python -m disttest``; others
run as scripts. Fragments that are not meant to run use ```py instead.
"""
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from tests import support

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, match in enumerate(BLOCK.finditer(path.read_text()), 1):
            yield path.relative_to(ROOT), number, match.group(1)


class DocSnippetsTest(unittest.TestCase):
    def test_there_are_snippets(self):
        self.assertGreater(len(list(blocks())), 5)

    def test_every_python_block_runs(self):
        for path, number, code in blocks():
            with self.subTest(doc=str(path), block=number):
                self._run(path, number, code)

    def _run(self, path, number, code):
        with tempfile.TemporaryDirectory() as tmp:
            name = re.sub(r"\W", "_", f"snippet_{path.stem}_{number}")
            Path(tmp, f"{name}.py").write_text(code)
            env = support.python_env({})
            if re.search(r"class \w+\((disttest\.DistributedTestCase|unittest\.TestCase)", code):
                cmd = [sys.executable, "-m", "disttest", name, "-q"]
            else:
                cmd = [sys.executable, f"{name}.py"]
            done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                  timeout=120, stdin=subprocess.DEVNULL)
            self.assertEqual(done.returncode, 0,
                             f"{path} block {number} failed:\n{done.stdout}\n{done.stderr}")


def tearDownModule():
    support.shutdown_and_check()


if __name__ == "__main__":
    unittest.main()
