"""The node side: ``this_node`` on and off a node, the agent's weight and its
lifetime being tied to the controller's."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import textwrap
import unittest

import psutil

from disttest import this_node
from disttest.errors import DisttestError, RemoteError
from disttest.requirements import Requirement
from tests import support
from tests.fixtures import nodefuncs as nf

_pool = None

HEAVY = ("psutil", "colorama", "platformdirs")


def setUpModule():
    global _pool
    _pool = support.make_pool()


def tearDownModule():
    support.shutdown_and_check()


class ThisNodeOnNodesTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = _pool.acquire(Requirement(size=3, ports=("admin", "app")))

    @classmethod
    def tearDownClass(cls):
        _pool.release(cls.cluster)

    def test_identity_and_ports(self):
        for node in self.cluster:
            with self.subTest(node=node.name):
                me = node.call(nf.whoami)
                self.assertEqual(me["name"], node.name)
                self.assertEqual(me["index"], node.index)
                self.assertEqual(me["host"], node.host)
                self.assertEqual(me["cluster_id"], self.cluster.id)
                self.assertEqual(me["port"], node.port("app"))
                self.assertEqual(node.call(nf.port_of, "admin"), node.port("admin"))

    def test_peers_are_the_other_nodes_addresses(self):
        for port_name in ("app", "admin"):
            for node in self.cluster:
                with self.subTest(node=node.name, port=port_name):
                    expected = {other.name: other.address(port_name)
                                for other in self.cluster if other is not node}
                    self.assertEqual(node.call(nf.whoami, port_name)["peers"], expected)

    def test_state_belongs_to_one_node(self):
        first, second = self.cluster[0], self.cluster[1]
        first.call(nf.state_put, "role", "leader")
        self.assertEqual(first.call(nf.state_items), {"role": "leader"})
        self.assertNotIn("role", second.call(nf.state_items))

    def test_unknown_port_name_lists_the_declared_ones(self):
        with self.assertRaises(RemoteError) as cm:
            self.cluster[0].call(nf.port_of, "metrics")
        self.assertIn("no port named 'metrics'", str(cm.exception))
        self.assertIn("['admin', 'app']", str(cm.exception))

    def test_inside_node(self):
        self.assertEqual(self.cluster.call_all(this_node.inside_node), [True] * 3)
        self.assertFalse(this_node.inside_node())

    def test_a_running_node_has_not_loaded_controller_dependencies(self):
        loaded = set(self.cluster[2].call(nf.loaded_modules))
        self.assertIn("disttest.this_node", loaded)  # the probe itself is sound
        for name in HEAVY:
            self.assertNotIn(name, loaded)


class ThisNodeOutsideTests(unittest.TestCase):

    def test_lookups_outside_a_node_say_where_they_work(self):
        lookups = {"name": lambda: this_node.name, "index": lambda: this_node.index,
                   "state": lambda: this_node.state, "port": this_node.port,
                   "peers": this_node.peers, "on_reset": lambda: this_node.on_reset(print)}
        for what, lookup in lookups.items():
            with self.subTest(what=what):
                with self.assertRaises(DisttestError) as cm:
                    lookup()
                self.assertIn("only meaningful on a node", str(cm.exception))
                self.assertIn("node.call(fn)", str(cm.exception))
                self.assertEqual(cm.exception.diagnosis.kind, "not-on-node")

    def test_unknown_attribute_is_an_attribute_error(self):
        with self.assertRaises(AttributeError):
            this_node.no_such_thing  # noqa: B018


class AgentWeightTests(unittest.TestCase):

    def test_importing_the_node_side_loads_no_controller_dependencies(self):
        # What importing the node side adds to what the interpreter loaded at
        # start-up: site hooks of the machine or a virtualenv (``.pth`` files)
        # may load typing and more into every interpreter, disttest or not.
        # json is imported after the node side, so it does not hide anything.
        code = textwrap.dedent("""
            import sys
            before = set(sys.modules)
            import disttest.agent, disttest.this_node
            added = set(sys.modules) - before
            import json
            print(json.dumps(sorted(added)))
            """)
        result = support.run_python(code)
        self.assertEqual(result.returncode, 0, result.stderr)
        loaded = set(json.loads(result.stdout))
        self.assertIn("disttest.agent", loaded)
        # What the interpreter loads before any code of ours (coverage.py's
        # subprocess measurement, a sitecustomize) is not the node side's doing.
        baseline = support.run_python("import sys; print(' '.join(sys.modules))")
        self.assertEqual(baseline.returncode, 0, baseline.stderr)
        loaded -= set(baseline.stdout.split())
        for name in HEAVY + ("typing", "dataclasses", "pickle", "multiprocessing"):
            self.assertNotIn(name, loaded)

    def test_agent_without_bootstrap_exits_with_a_message(self):
        result = support.run_python(["-c", "from disttest.agent import main; main()"], input="")
        self.assertEqual(result.returncode, 2)
        self.assertIn("no bootstrap on stdin", result.stderr)

    def test_the_cluster_key_is_not_in_argv_or_the_environment(self):
        cluster = _pool.acquire(Requirement(size=1))
        self.addCleanup(_pool.release, cluster)
        node = cluster[0]
        key = node.boot["key"]
        proc = psutil.Process(node.pid)
        self.assertIn(support.AGENT_MARK, " ".join(proc.cmdline()))
        self.assertNotIn(key, " ".join(proc.cmdline()))
        self.assertNotIn(key, " ".join(f"{k}={v}" for k, v in proc.environ().items()))


_CONTROLLER = textwrap.dedent("""
    import json, sys, time
    import disttest
    cluster = disttest.start_cluster({size})
    print(json.dumps({{"pids": [n.pid for n in cluster], "id": cluster.id}}), flush=True)
    time.sleep(60)
    """)


class ControllerDeathTests(unittest.TestCase):
    """Nodes never outlive their controller, however it ends."""

    def start_controller(self, size=3):
        proc = support.popen_python(_CONTROLLER.format(size=size), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        self.addCleanup(proc.wait, 10)
        self.addCleanup(proc.kill)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.stdout.close)
        line = proc.stdout.readline()
        if not line:
            self.fail("the controller did not start: " + proc.stderr.read())
        started = json.loads(line)
        for pid in started["pids"]:
            self.assertFalse(support.gone(pid))
        return proc, started

    def assertNodesGone(self, pids, timeout=10.0):
        left = support.wait_for(lambda: all(support.gone(p) for p in pids), timeout)
        self.assertTrue(left, f"nodes still running: {[p for p in pids if not support.gone(p)]}")

    def test_sigkilled_controller_leaves_no_node(self):
        proc, started = self.start_controller()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.assertNodesGone(started["pids"])
        # Nobody was left to remove the cluster's temp dir and lock files (the
        # kernel released the locks themselves): tidy up after the test.
        for path in support.our_temp_dirs([started["id"]]):
            shutil.rmtree(path, ignore_errors=True)
        support.remove_dead_locks(proc.pid)

    def test_sigterm_stops_the_clusters_and_cleans_up(self):
        proc, started = self.start_controller(size=2)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), -signal.SIGTERM)
        self.assertNodesGone(started["pids"])
        support.assert_no_leaks(self, pid=proc.pid, cluster_ids=[started["id"]],
                                processes=False)  # this module's own pool is up

    def test_ctrl_c_stops_the_clusters_and_cleans_up(self):
        proc, started = self.start_controller(size=2)
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        self.assertNodesGone(started["pids"])
        support.assert_no_leaks(self, pid=proc.pid, cluster_ids=[started["id"]],
                                processes=False)  # this module's own pool is up


if __name__ == "__main__":
    unittest.main()
