"""The nemesis on real clusters, and a history test run end to end with --seed."""
from __future__ import annotations

import json
import os
import threading
import traceback
import unittest
import xml.etree.ElementTree as ET
from unittest import mock

from disttest.history.nemesis import Nemesis, resolve_seed
from disttest.history.operations import faults, operations
from disttest.history.recorder import History
from disttest.requirements import Requirement
from tests import support
from tests.test_runner_e2e import Sample


def first_steps(nemesis: Nemesis, n: int = 25) -> list[dict]:
    steps = nemesis.schedule()
    return [next(steps) for _ in range(n)]


def whoami():
    from disttest import this_node
    return this_node.name


def record_on_node(count):
    """Runs on a node: a client there records into its own History."""
    from disttest import this_node
    from disttest.history.recorder import History

    history = History()
    for i in range(count):
        with history.op(this_node.name, "write", i, key=this_node.name):
            this_node.state[this_node.name] = i
    return history.events()


class NemesisOnRealClusters(support.LeakCheckMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pool = support.make_pool()
        cls.pools = (cls.pool,)
        cls.proxied = cls.pool.acquire(Requirement(size=3, network="proxy"))
        cls.direct = cls.pool.acquire(Requirement(size=3))

    def test_a_seed_draws_the_same_schedule_every_time(self):
        a = first_steps(Nemesis(self.proxied, seed=7))
        self.assertEqual(a, first_steps(Nemesis(self.proxied, seed=7)))
        self.assertNotEqual(a, first_steps(Nemesis(self.proxied, seed=8)))
        self.assertEqual({s["fault"] for s in a}, {"kill", "pause", "partition", "isolate",
                                                   "delay"})
        for step in a:
            self.assertAlmostEqual(step["quiet"], step["seconds"])  # duty 0.5
            if step["fault"] == "partition":
                groups = step["targets"]
                self.assertEqual(sorted(groups[0] + groups[1]), ["node-0", "node-1", "node-2"])
                self.assertTrue(groups[0] and groups[1])

    def test_the_seed_comes_from_the_environment_or_is_new(self):
        with mock.patch.dict(os.environ, {"DISTTEST_SEED": "31"}):
            self.assertEqual(Nemesis(self.direct).seed, 31)
            self.assertEqual(Nemesis(self.direct, seed=5).seed, 5)
        with mock.patch.dict(os.environ, {"DISTTEST_SEED": "soon"}):
            with self.assertRaises(ValueError) as caught:
                resolve_seed()
            self.assertIn("DISTTEST_SEED='soon' is not allowed", str(caught.exception))
        with mock.patch.dict(os.environ, {}, clear=False):
            os.environ.pop("DISTTEST_SEED", None)
            self.assertNotEqual(resolve_seed(), resolve_seed())

    def test_bad_settings_are_named(self):
        with self.assertRaises(ValueError) as caught:
            Nemesis(self.direct, faults=("partition",))
        self.assertIn("need a cluster whose network can be cut", str(caught.exception))
        self.assertIn('network = "proxy"', str(caught.exception))
        self.assertEqual(Nemesis(self.direct).faults, ("kill", "pause"))
        for kwargs, expected in (({"faults": ("flood",)}, "allowed are kill, pause"),
                                 ({"duty": 0}, "0 < duty <= 1"),
                                 ({"fault_seconds": (1, 0.5)}, "0 < shortest <= longest")):
            with self.subTest(**kwargs), self.assertRaises(ValueError) as caught:
                Nemesis(self.proxied, **kwargs)
            self.assertIn(expected, str(caught.exception))

    def test_faults_are_injected_recorded_and_healed(self):
        cluster = self.proxied
        history = History()
        restarted = []
        nemesis = Nemesis(cluster, history, seed=3, fault_seconds=(0.05, 0.15), duty=0.8,
                          on_restart=restarted.append, announce=False)
        stop = threading.Event()

        def client(node):
            while not stop.is_set():
                with history.op(node.name, "read") as op:
                    op.ok(node.submit(whoami).result(timeout=5))

        threads = [threading.Thread(target=client, args=(node,)) for node in cluster]
        with nemesis:
            for thread in threads:
                thread.start()
            support.wait_for(lambda: len(nemesis.injected) >= 6, timeout=60)
        stop.set()
        for thread in threads:
            thread.join(30)
        recorded = faults(history)
        self.assertGreaterEqual(len(recorded), 6)
        self.assertEqual([f.name for f in recorded],
                         [s["fault"] for s in first_steps(nemesis, len(recorded))])
        self.assertTrue(all(f.start < f.end < float("inf") for f in recorded))
        kills = [f for f in recorded if f.name == "kill"]
        self.assertEqual([n.name for n in restarted], [f.detail for f in kills])
        # Healed: every node alive, answering, no cut or delay left.
        cluster.wait_healthy(timeout=10)
        self.assertEqual(cluster.faults(), [])
        self.assertEqual(sorted(cluster.call_all(whoami)), ["node-0", "node-1", "node-2"])
        self.assertEqual(history.meta["seed"], 3)
        self.assertTrue(all(op.status == "ok" for op in operations(history)))

    def test_nodes_record_and_the_test_merges_their_histories(self):
        from disttest.history.checker import check_linearizable
        from disttest.history.models import KVMap

        history = History()
        with history.op("test", "read", key="node-0") as op:
            op.ok(None)
        for events in self.direct.call_all(record_on_node, 50):
            history.merge(events)
        ops = operations(history)
        self.assertEqual(len(ops), 1 + 3 * 50)
        self.assertEqual(len({op.id for op in ops}), len(ops))
        self.assertEqual({op.process for op in ops}, {"test", "node-0", "node-1", "node-2"})
        # One clock for every process of the machine: the test's read came first.
        self.assertEqual(ops[0].process, "test")
        self.assertEqual(check_linearizable(history, KVMap()).result, "ok")

    def test_an_error_in_the_nemesis_reaches_the_test(self):
        def broken(node):
            raise RuntimeError("could not start the service")

        nemesis = Nemesis(self.direct, faults=("kill",), fault_seconds=(0.01, 0.02),
                          on_restart=broken, announce=False)
        with self.assertRaises(RuntimeError):
            with nemesis:
                support.wait_for(lambda: nemesis._thread is None or not nemesis._thread.is_alive()
                                 or nemesis.injected, timeout=30)
                support.wait_for(lambda: not nemesis._thread.is_alive(), timeout=30)
        self.direct.wait_healthy(timeout=10)


    def test_a_failure_inside_the_block_names_the_seed(self):
        with self.assertRaises(AssertionError) as caught:
            with Nemesis(self.direct, seed=99, faults=("pause",)):
                raise AssertionError("a client saw something wrong")
        error = caught.exception
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        if hasattr(caught.exception, "add_note"):
            self.assertIn("nemesis seed 99: replay its faults with --seed 99", text)


class SeedEndToEnd(unittest.TestCase):
    """``python -m disttest --seed N`` on tests/samples/history."""

    def setUp(self):
        self.sample = Sample(self.addCleanup, "history")

    def run_sample(self, *args):
        histories = self.sample.path("histories")
        junit = self.sample.path("junit.xml")
        run = self.sample.run("-v", *args, "--junit-xml", str(junit), report=True,
                              env={"DISTTEST_HISTORY_DIR": str(histories)})
        return run, histories, junit

    def test_under_b_the_attachment_line_is_the_junit_system_out(self):
        run, histories, junit = self.run_sample("-b", "-k", "test_stale_register")
        self.assertEqual(run.returncode, 1, run.stderr)
        html = histories / "tests.test_register.RegisterTest.test_stale_register.html"
        (case,) = [c for c in ET.parse(junit).iter("testcase") if c.get("name") ==
                   "test_stale_register"]
        self.assertIn(f"[[ATTACHMENT|{html}]]", case.find("system-out").text)

    def test_a_stale_read_fails_with_its_window_seed_and_views(self):
        run, histories, junit = self.run_sample("--seed", "4242")
        self.assertEqual(run.returncode, 1, run.stderr)
        out = run.stderr
        self.assertIn("test_correct_register (tests.test_register.RegisterTest", out)
        self.assertRegex(out, r"test_correct_register .*\.\.\. ok")
        self.assertIn("history is not linearizable against Register", out)
        self.assertIn("no order of the operations explains", out)
        self.assertRegex(out, r"> c0: read\(\) -> \d+")
        self.assertIn("nemesis seed 4242: replay its faults with --seed 4242", out)
        name = "tests.test_register.RegisterTest.test_stale_register"
        html = histories / f"{name}.html"
        saved = histories / f"{name}.json"
        self.assertIn(f"html {html}", out)
        page = html.read_text()
        self.assertIn("<svg", page)
        self.assertIn('class="failed', page)     # the read no order explains
        self.assertIn('class="window"', page)    # its window, highlighted
        self.assertIn('class="fault"', page)     # the pauses, as bands
        self.assertNotIn("<script", page)        # self-contained
        loaded = History.load(str(saved))
        self.assertEqual(loaded.meta["seed"], 4242)
        self.assertTrue(faults(loaded))
        self.assertFalse((histories / "tests.test_register.RegisterTest.test_correct_register"
                          ".json").exists())
        self.assertIn(f"[[ATTACHMENT|{html}]]", junit.read_text())
        self.assertIn(f"[[ATTACHMENT|{html}]]", run.stdout)  # the test's own output
        # The summary lists the view with its seed, and so does the JSON report.
        summary = out.split("History views of failing tests\n", 1)[1]
        self.assertIn(f"  {name}: {html} (replay: --seed 4242)", summary.splitlines()[0])
        tests = {t["id"]: t for t in run.report["tests"]}
        self.assertEqual(tests[name]["history"], {"html": str(html), "seed": 4242})
        self.assertIsNone(tests["tests.test_register.RegisterTest.test_correct_register"]
                          ["history"])
        # The same seed draws the same faults again.
        first = self.sample.read_log()
        run, _, _ = self.run_sample("--seed", "4242")
        again = self.sample.read_log()
        for test_id in first:
            self.assertEqual(first[test_id]["seed"], 4242)
            self.assertEqual(first[test_id]["faults"], again[test_id]["faults"])


if __name__ == "__main__":
    unittest.main()
