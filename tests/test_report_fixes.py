"""What the reports say about what a test did: --cluster-debug shows every
node and network operation in order with the node's own lines, the faults
line counts the test's actions and not clean-up, counters are per class, a
node another test killed says so, and ``self.wait_until`` fails once.
"""
from __future__ import annotations

import json
import re
import tempfile
import textwrap
import unittest
from pathlib import Path

from tests import support


def tearDownModule():
    support.shutdown_and_check()


SAMPLE = textwrap.dedent('''
    import disttest


    def say(text):
        print(text, flush=True)


    def answer():
        return 42


    class Faults(disttest.DistributedTestCase):
        cluster_size = 2
        network = "proxy"

        def tearDown(self):
            self.cluster.heal()  # clean-up: nothing is cut by then

        def test_every_operation(self):
            a, b = self.nodes
            a.call(say, "before-the-pause")
            a.pause()
            a.resume()
            self.cluster.isolate(b)
            self.cluster.heal()
            b.call(say, "before-the-kill")
            b.kill()
            b.restart()
            b.terminate()
            b.restart()
            self.assertEqual(b.restarts, 2)


    class Counters(disttest.DistributedTestCase):
        cluster_size = 2
        network = "proxy"

        def test_restarts_start_at_zero(self):
            self.assertEqual([n.restarts for n in self.nodes], [0, 0])


    class Earlier(disttest.DistributedTestCase):
        cluster_size = 1

        def test_a_kills(self):
            self.nodes[0].kill()

        def test_b_uses_it(self):
            self.nodes[0].call(answer)

        def test_c_waits_in_vain(self):
            self.wait_until(lambda: False, timeout=0.2, message="the flag never rose")
''')


class ReportFixesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        (root / "test_ops_sample.py").write_text(SAMPLE)
        cls.report = root / "report.json"
        cls.done = support.run_python(
            ["-m", "disttest", "test_ops_sample", "-v", "--cluster-debug",
             "--json-report", str(cls.report)], cwd=str(root), timeout=120)
        cls.output = cls.done.stdout + cls.done.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def outcome(self, name):
        # With --cluster-debug, lines of the debug log may come between a
        # test's name and its outcome.
        match = re.search(rf"^{name} \(.*?\.\.\. (?:.*?\n\[ *[\d.]+s\] disttest: .*?\n)*"
                          rf"(?:\[.*?\n)*?(ok|ERROR|FAIL)$", self.output, re.M)
        self.assertIsNotNone(match, self.output)
        return match.group(1)

    def test_debug_shows_every_operation_in_order_with_node_lines(self):
        self.assertEqual(self.outcome("test_every_operation"), "ok")
        wanted = ["before-the-pause", "pause node node-0", "resume node node-0",
                  "isolate in cluster", "heal in cluster", "before-the-kill",
                  "kill node node-1", "node restarted", "terminate node node-1",
                  "node restarted"]
        position = 0
        for text in wanted:
            found = self.output.find(text, position)
            self.assertGreaterEqual(found, 0, f"{text!r} missing or out of order:\n"
                                              + self.output)
            position = found + len(text)

    def test_the_faults_line_counts_what_the_test_did(self):
        line = re.search(r"faults in Faults: (.*)", self.output)
        self.assertIsNotNone(line, self.output)
        counts = dict((kind, int(n)) for kind, n in re.findall(r"(\w+) x(\d+)", line.group(1)))
        self.assertEqual(counts, {"pause": 1, "isolate": 1, "heal": 1, "kill": 1,
                                  "restart": 2, "terminate": 1})
        report = json.loads(self.report.read_text())
        kinds = [f["kind"] for entry in report["faults"] if entry["class"].endswith("Faults")
                 for f in entry["faults"]]
        self.assertEqual(kinds, ["pause", "isolate", "heal", "kill", "restart", "terminate",
                                 "restart"])

    def test_counters_are_per_class(self):
        self.assertEqual(self.outcome("test_restarts_start_at_zero"), "ok")

    def test_a_node_killed_by_an_earlier_test_says_so(self):
        self.assertEqual(self.outcome("test_b_uses_it"), "ERROR")
        block = self.output.split("ERROR: test_b_uses_it", 1)[1].split("=" * 70)[0]
        self.assertIn("killed by an earlier test (test_ops_sample.Earlier.test_a_kills)", block)

    def test_wait_until_fails_with_one_message(self):
        self.assertEqual(self.outcome("test_c_waits_in_vain"), "FAIL")
        block = self.output.split("FAIL: test_c_waits_in_vain", 1)[1].split("=" * 70)[0]
        self.assertEqual(block.count("AssertionError: the flag never rose"), 1, block)
        self.assertNotIn("During handling", block)


PLAN_SAMPLE = textwrap.dedent('''
    import disttest


    class Zero(disttest.DistributedTestCase):
        cluster_size = 0

        def test_x(self):
            pass


    class Text(disttest.DistributedTestCase):
        cluster_size = "3"

        def test_x(self):
            pass


    class Ports(disttest.DistributedTestCase):
        node_ports = "app"

        def test_x(self):
            pass


    class Proxied(disttest.DistributedTestCase):
        cluster_size = 1
        network = "proxy"

        @disttest.tag("fast")
        def test_x(self):
            pass
''')


class CommandLineTest(unittest.TestCase):
    """--plan validates like a run, tags are checked, --help names the subcommands,
    and --keep-cluster says up front which clusters it cannot keep."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        (cls.root / "test_plan_sample.py").write_text(PLAN_SAMPLE)
        (cls.root / "test_broken_sample.py").write_text("import no_such_module_here\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_disttest(self, *args):
        done = support.run_python(["-m", "disttest", *args], cwd=str(self.root), timeout=120)
        return done.returncode, done.stdout + done.stderr

    def test_plan_reports_bad_classes_and_imports_and_exits_2(self):
        code, output = self.run_disttest("test_plan_sample", "test_broken_sample", "--plan")
        self.assertEqual(code, 2, output)
        for problem in ("test_plan_sample.Zero: cluster_size = 0 is not allowed",
                        "test_plan_sample.Text: cluster_size = '3' is not allowed",
                        "test_plan_sample.Ports: node_ports = 'app' is not allowed",
                        "test_broken_sample: cannot be imported: ModuleNotFoundError: "
                        "No module named 'no_such_module_here'"):
            self.assertIn(problem, output)
        code, output = self.run_disttest("test_plan_sample.Proxied", "--plan")
        self.assertEqual(code, 0, output)

    def test_an_unknown_tag_is_a_warning_naming_the_known_ones(self):
        code, output = self.run_disttest("test_plan_sample.Proxied", "--only", "nosuchtag")
        self.assertIn("warning: no test has the tag(s) 'nosuchtag' given to --only/--exclude; "
                      "the tags of these tests are: distributed, fast", output)
        code, output = self.run_disttest("test_plan_sample.Proxied", "--only", "fast",
                                         "--plan")
        self.assertNotIn("warning", output)

    def test_help_lists_the_subcommands(self):
        code, output = self.run_disttest("--help")
        self.assertEqual(code, 0, output)
        for name in ("config", "preflight", "cluster"):
            self.assertRegex(output, rf"python -m disttest {name} +\S")

    def test_keep_cluster_says_up_front_what_it_cannot_keep(self):
        code, output = self.run_disttest("test_plan_sample.Proxied", "--keep-cluster")
        self.assertEqual(code, 0, output)
        warning = output.index("--keep-cluster: the clusters of Proxied are not kept "
                               "(network = 'proxy'")
        self.assertLess(warning, output.index("starting cluster"))


if __name__ == "__main__":
    unittest.main()
