"""Simulated nodes: the same test classes pass on real and on simulated clusters.

End to end, ``tests/samples_failures/api`` (call, submit, spawn, call_all,
logs, kill and restart, pause and resume, ports, peers, state, on_reset) runs
with and without ``--simulate``. In process, what simulation promises of its
own: each node its own ``this_node``, a killed node's services stopped, no
thread left once the pool is shut down.
"""
from __future__ import annotations

import socket
import threading
import time
import unittest

from disttest.errors import NodeCrashedError
from disttest.requirements import Requirement
from tests import support
from tests.fixtures import nodefuncs as nf
from tests.test_failures import FailureSample, verbose_line

API_TESTS = {
    "tests.test_api.Api.test_call_all_and_submit",
    "tests.test_api.Api.test_call_and_identity",
    "tests.test_api.Api.test_logs_name_the_node",
    "tests.test_api.Api.test_nodes_are_processes",
    "tests.test_api.Api.test_pause_and_resume",
    "tests.test_api.Api.test_printed_output_is_in_the_log",
    "tests.test_api.Api.test_services_reach_each_other",
    "tests.test_api.Api.test_spawn",
    "tests.test_api.Api.test_state_is_per_node",
    "tests.test_api.Api.test_zz_kill_then_restart",
    "tests.test_api.ApiAgain.test_reset_ran_on_reset_and_cleared_state",
}
REAL_ONLY = {"tests.test_api.Api.test_nodes_are_processes",
             "tests.test_api.Api.test_printed_output_is_in_the_log"}
SIMULATED_SKIP = "skipped 'needs real node processes; this cluster is simulated'"


def tearDownModule():
    support.shutdown_and_check()


class SameClassesRealAndSimulated(unittest.TestCase):
    """One run of the api sample on real nodes, one with --simulate."""

    @classmethod
    def setUpClass(cls):
        cls.sample = FailureSample(cls.addClassCleanup, "api")
        cls.real = cls.sample.run("-v", report=True)
        cls.real_log = cls.sample.read_log()
        cls.simulated = cls.sample.run("-v", "--simulate", report=True)
        cls.simulated_log = cls.sample.read_log()

    def outcomes(self, run) -> dict:
        return {t["id"]: t["outcome"] for t in run.report["tests"]}

    def test_every_test_passes_on_real_nodes(self):
        run = self.real
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 11, "status": "OK"}, run)
        self.assertEqual(self.outcomes(run), dict.fromkeys(API_TESTS, "passed"))
        self.assertEqual([c["simulated"] for c in run.report["clusters"]], [False])
        self.assertEqual(len(run.agents), 4, "3 nodes and node-2 restarted once")

    def test_the_same_tests_pass_on_simulated_nodes(self):
        run = self.simulated
        self.assertEqual(run.returncode, 0, run)
        self.assertEqual(run.counts(), {"run": 11, "status": "OK", "skipped": 2}, run)
        expected = {t: "skipped" if t in REAL_ONLY else "passed" for t in API_TESTS}
        self.assertEqual(self.outcomes(run), expected)
        for test_id in REAL_ONLY:
            self.assertTrue(verbose_line(run.stderr, test_id).endswith(SIMULATED_SKIP), test_id)
        self.assertEqual(run.agents, [], "simulated nodes started a process")

    def test_the_report_and_the_output_say_simulated(self):
        run = self.simulated
        (cluster,) = run.report["clusters"]
        self.assertTrue(cluster["simulated"])
        self.assertEqual((cluster["size"], cluster["tests"], cluster["reuses"]), (3, 11, 1))
        self.assertEqual(cluster["classes"], ["tests.test_api.Api", "tests.test_api.ApiAgain"])
        self.assertRegex(run.stderr, rf"disttest: simulated cluster {cluster['id']} ready: "
                                     r"3 node\(s\)")
        for test_id in API_TESTS - REAL_ONLY:
            self.assertRegex(verbose_line(run.stderr, test_id),
                             rf"\[simulated cluster {cluster['id']}\] \.\.\. ok$")
        self.assertRegex(run.stderr, rf"(?m)^  {cluster['id']} .*  simulated$")
        self.assertNotIn("[simulated cluster", self.real.stderr)

    def test_both_saw_the_same_cluster_shape(self):
        test_id = "tests.test_api.Api.test_call_and_identity"
        self.assertEqual(self.real_log[test_id]["names"], ["node-0", "node-1", "node-2"])
        self.assertEqual(self.simulated_log[test_id]["names"], self.real_log[test_id]["names"])
        self.assertEqual((self.real_log[test_id]["simulated"],
                          self.simulated_log[test_id]["simulated"]), (False, True))


class SimulatedNodes(unittest.TestCase):
    """What the simulated launcher itself promises, on a pool of this process."""

    def setUp(self):
        self.addCleanup(support.assert_no_leaks)
        self.pool = support.make_pool()
        self.addCleanup(self.pool.shutdown)
        self.events = []
        self.pool.events.subscribe(self.events.append)

    def test_each_node_sees_itself_even_when_called_at_once(self):
        cluster = self.pool.acquire(Requirement(3, simulated=True))
        self.assertTrue(cluster.simulated)
        self.assertEqual([n.pid for n in cluster], [None, None, None])
        # The three calls meet at a barrier: they run at once, in threads of this process.
        futures = [node.submit(_names_around_a_barrier, 3) for node in cluster]
        self.assertEqual([f.result(10) for f in futures],
                         [("node-0", "node-0"), ("node-1", "node-1"), ("node-2", "node-2")])
        cluster[0].call(nf.state_put, "key", "zero")
        self.assertEqual(cluster.call_all(nf.state_items), [{"key": "zero"}, {}, {}])

    def test_node_env_is_not_applied_and_a_warning_says_so(self):
        self.pool.acquire(Requirement(1, env=(("SIM_MODE", "on"),), simulated=True))
        warnings = [e.message for e in self.events if e.kind == "warning"]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("node_env is not applied", warnings[0])

    def test_kill_stops_the_nodes_services_and_restart_serves_again(self):
        cluster = self.pool.acquire(Requirement(2, simulated=True))
        node = cluster[1]
        port = node.port()
        node.call(_serve_on_app_port)
        self.assertFalse(_bindable(port))
        node.kill()
        self.assertFalse(node.alive)
        with self.assertRaises(NodeCrashedError):
            node.call(nf.add, 1, 1)
        self.assertTrue(support.wait_for(lambda: _bindable(port)), "service still listening")
        self.assertEqual([e.kind for e in self.events if e.kind == "node_crashed"], [],
                         "a kill on purpose is not a crash")
        node.restart()
        self.assertEqual(node.call(nf.add, 1, 1), 2)
        self.assertEqual(node.port(), port)

    def test_pause_holds_calls_until_resume(self):
        cluster = self.pool.acquire(Requirement(1, simulated=True))
        node = cluster[0]
        node.pause()
        future = node.submit(nf.add, 2, 3)
        time.sleep(0.2)
        self.assertFalse(future.done())
        node.resume()
        self.assertEqual(future.result(10), 5)

    def test_no_thread_outlives_the_pool(self):
        cluster = self.pool.acquire(Requirement(2, simulated=True))
        cluster.call_all(nf.add, 1, 1)
        cluster[0].spawn(nf.sleep_and_record, 0.05)
        self.pool.shutdown()

        def left():
            return [t.name for t in threading.enumerate() if t.name.startswith("disttest-sim")
                    or t.name.startswith(("disttest-conn", "disttest-spawn-"))]
        self.assertTrue(support.wait_for(lambda: not left(), timeout=5), left())


def _names_around_a_barrier(parties: int) -> tuple[str, str]:
    from disttest import this_node

    before = this_node.name
    nf.meet_at_barrier("simulated-names", parties, 5)
    return before, this_node.name


def _serve_on_app_port():
    """Listen on this node's app port until the node is reset or killed."""
    from disttest import this_node

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(this_node.address())
    sock.listen(1)
    this_node.on_reset(sock.close)


def _bindable(port: int) -> bool:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


if __name__ == "__main__":
    unittest.main()
