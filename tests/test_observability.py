"""Watching a run: --cluster-debug, GitHub Actions output, node logs of failing classes."""
import re
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

from tests import support

PROJECT = {
    "nodefuncs.py": '''
        from disttest import this_node

        def say(word):
            print(f"{this_node.name} says {word}", flush=True)
            return word
    ''',
    "test_watch.py": '''
        import disttest
        import nodefuncs


        class Talks(disttest.DistributedTestCase):
            cluster_size = 2

            def test_says(self):
                self.assertEqual(self.cluster.call_all(nodefuncs.say, "hello"), ["hello"] * 2)


        class Fails(disttest.DistributedTestCase):
            cluster_size = 2

            def test_fails(self):
                self.cluster.call_all(nodefuncs.say, "before-failing")
                self.assertEqual(1, 2, "deliberate")
    ''',
}


class Project:
    def __init__(self, test: unittest.TestCase) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="disttest-watch-"))
        test.addCleanup(__import__("shutil").rmtree, self.root, True)
        for name, text in PROJECT.items():
            (self.root / name).write_text(textwrap.dedent(text))

    def run(self, *args, env=None) -> subprocess.CompletedProcess:
        environ = support.python_env({"NO_COLOR": "1", "DISTTEST_CI": "",
                                      **(env or {})})
        for name in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "DISTTEST_CI"):
            environ.pop(name, None)
        environ.update(env or {})
        return subprocess.run([sys.executable, "-m", "disttest", *args], cwd=self.root,
                              env=environ, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)


class ClusterDebugTest(unittest.TestCase):
    def test_node_log_lines_are_streamed_with_the_node_name(self):
        done = Project(self).run("test_watch.Talks", "--cluster-debug")
        self.assertEqual(done.returncode, 0, done.stderr)
        # Each node's own output, prefixed with its cluster and name.
        for node in ("node-0", "node-1"):
            self.assertRegex(done.stderr, rf"\[c\d+-\w+ {node}\] {node} says hello")
        # Every call with its duration.
        self.assertRegex(done.stderr, r"rpc node-0 say ok in \d+\.\d+ ms")

    def test_without_it_node_output_stays_in_the_logs(self):
        done = Project(self).run("test_watch.Talks")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn("says hello", done.stderr)
        self.assertNotIn("rpc node-0", done.stderr)


class GitHubActionsTest(unittest.TestCase):
    def test_failing_class_logs_are_grouped_and_failures_annotated(self):
        done = Project(self).run(env={"GITHUB_ACTIONS": "true"})
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("CI detected (GitHub Actions)", done.stderr)
        # The failing class's node logs, each in a collapsible group.
        groups = re.findall(r"::group::(node-\d) log \(cluster \S+\) for failing "
                            r"test_watch\.Fails\n(.*?)::endgroup::", done.stderr, re.S)
        self.assertEqual(sorted(g[0] for g in groups), ["node-0", "node-1"])
        for name, text in groups:
            self.assertIn(f"{name} says before-failing", text)
        # Only the failing class: the passing one gets no group.
        self.assertNotIn("for failing test_watch.Talks", done.stderr)
        # An annotation at the failing line of the test file.
        written = textwrap.dedent(PROJECT["test_watch.py"]).splitlines()
        line = next(i for i, text in enumerate(written, 1) if "deliberate" in text)
        self.assertRegex(done.stderr, rf"::error file=test_watch\.py,line={line},"
                                      r"title=failed%3A test_watch\.Fails\.test_fails::")

    def test_other_ci_prints_plain_sections(self):
        done = Project(self).run(env={"GITLAB_CI": "true"})
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("---- node-0 log (cluster", done.stderr)
        self.assertIn("---- end of node logs ----", done.stderr)
        self.assertNotIn("::group::", done.stderr)
        self.assertNotIn("::error", done.stderr)

    def test_a_developer_machine_gets_neither(self):
        done = Project(self).run()
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertNotIn("::group::", done.stderr)
        self.assertNotIn("---- node-0 log", done.stderr)


def tearDownModule():
    support.shutdown_and_check()


if __name__ == "__main__":
    unittest.main()
