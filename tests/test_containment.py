"""A node contains what its code starts: killing, restarting or stopping it, and
the runner's death, end every descendant, double-forked daemons included; a
node stuck in C code holding the GIL still ends with its runner.

Real node processes throughout; the runner's death is a real SIGKILL of a
runner subprocess. Linux only (``PR_SET_CHILD_SUBREAPER``, ``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import unittest

from disttest import containment
from disttest.requirements import Requirement
from tests import support
from tests.containment_nodefuncs import crash_in_c, parent_of, start_chain, start_escapees


def setUpModule():
    if not containment.supported():
        raise unittest.SkipTest("process containment uses Linux prctl(): elsewhere a "
                                "node's children may outlive it (documented)")


def tearDownModule():
    support.shutdown_and_check()


def gone(pids) -> bool:
    return all(support.gone(pid) for pid in pids)


kill_quietly = support.kill_quietly


class NodeEndsItsDescendants(unittest.TestCase):
    node_start = "spawn"

    def setUp(self):
        self.pool = support.make_pool(node_start=self.node_start)
        self.addCleanup(self.pool.shutdown)
        self.events = []
        self.pool.events.subscribe(self.events.append)
        self.cluster = self.pool.acquire(Requirement(size=1))
        self.node = self.cluster.nodes[0]
        self.escapees = self.node.call(start_escapees)
        self.addCleanup(kill_quietly, self.escapees)

    def test_a_double_forked_daemon_is_re_parented_to_its_node(self):
        child, daemon = self.escapees
        self.assertEqual(parent_of(child), self.node.pid)
        self.assertEqual(parent_of(daemon), self.node.pid, "the node is not its subreaper")

    def test_killing_a_node_ends_them(self):
        self.node.kill()
        self.assertTrue(support.wait_for(lambda: gone(self.escapees)),
                        f"{self.escapees} outlived their killed node")

    def test_restarting_a_node_ends_them(self):
        old = self.node.pid
        self.node.restart()
        self.assertNotEqual(self.node.pid, old)
        self.assertTrue(support.wait_for(lambda: gone(self.escapees)),
                        f"{self.escapees} outlived their node's restart")

    def test_a_node_restarted_from_a_short_lived_thread_outlives_that_thread(self):
        # The kernel's parent-death signal follows the creating *thread*: were
        # the node created on this worker, its end would arm the node's alarm.
        import signal as signals
        import threading

        worker = threading.Thread(target=self.node.restart)
        worker.start()
        worker.join()
        self.assertTrue(self.node.alive)
        self.assertEqual(self.node.call(signals.getitimer, signals.ITIMER_REAL), (0.0, 0.0),
                         "the node was told its controller died")

    def test_stopping_a_cluster_reports_them_as_leaks_and_ends_them(self):
        self.pool.release(self.cluster)
        self.pool.stop(self.cluster)
        self.assertTrue(support.wait_for(lambda: gone(self.escapees)), self.escapees)
        [leak] = [e for e in self.events if e.kind == "leak"]
        self.assertEqual(sorted(leak.pids), sorted(self.escapees))


class ForkedNodeEndsItsDescendants(NodeEndsItsDescendants):
    """The same for a node forked from the template, whose template also ends
    what a node that crashed by itself left behind."""
    node_start = "template"

    def test_the_node_is_made_by_the_template(self):
        self.assertNotEqual(parent_of(self.node.pid), os.getpid(),
                            "not a forked node: the template was refused")
        self.assertEqual([e.message for e in self.events if e.kind == "warning"], [])

    def test_what_a_node_that_crashed_by_itself_left_is_ended(self):
        # Nobody asked the node to end: no snapshot of its tree was taken. What
        # it left is re-parented to the template, its subreaper, which kills it.
        self.node.submit(crash_in_c)
        self.assertTrue(support.wait_for(lambda: not self.node.alive), "the node did not crash")
        self.assertTrue(support.wait_for(lambda: gone(self.escapees)),
                        f"{self.escapees} outlived their crashed node")
        self.assertTrue(support.wait_for(lambda: "left behind" in self.node.logs()),
                        self.node.logs())
        self.assertIn(f"ended 2 process(es) this node left behind: "
                      f"{' '.join(map(str, sorted(self.escapees)))}", self.node.logs())

    def test_a_node_that_exits_by_itself_with_a_deep_tree_leaves_nothing(self):
        # A chain of descendants: each level is re-parented once the one above dies.
        chain = self.node.call(start_chain, 4)
        self.addCleanup(kill_quietly, chain)
        self.node.submit(os._exit, 3)
        self.assertTrue(support.wait_for(lambda: not self.node.alive), "the node did not exit")
        self.assertTrue(support.wait_for(lambda: gone(chain + self.escapees)),
                        [p for p in chain + self.escapees if not support.gone(p)])

    def test_a_kept_node_is_not_the_templates_to_end(self):
        # A kept node outlives its controller; the template that forked it ends
        # with the controller and must leave it running.
        template_pid = parent_of(self.node.pid)
        self.node.process.outlive_controller()
        self.pool.launchers[False].close()  # what ends it with the controller, too
        self.assertTrue(support.gone(template_pid), "the template did not end")
        self.assertTrue(self.node.alive, "the template ended a kept node")
        self.assertEqual(self.node.call(os.getpid), self.node.pid)


class SpawnedNodeBelowTheTemplate(ForkedNodeEndsItsDescendants):
    """A node the template cannot fork (its node_env sets a PYTHON* variable,
    read at interpreter start) is a new interpreter, started by the template
    so that it keeps what the node leaves as it keeps a forked node's."""
    node_env = {"PYTHONHASHSEED": "7"}

    def setUp(self):
        self.pool = support.make_pool(node_start=self.node_start)
        self.addCleanup(self.pool.shutdown)
        self.events = []
        self.pool.events.subscribe(self.events.append)
        self.cluster = self.pool.acquire(Requirement(size=1, env=tuple(self.node_env.items())))
        self.node = self.cluster.nodes[0]
        self.escapees = self.node.call(start_escapees)
        self.addCleanup(kill_quietly, self.escapees)

    def test_the_node_is_made_by_the_template(self):
        self.assertNotEqual(parent_of(self.node.pid), os.getpid())
        expected = subprocess.run([sys.executable, "-c", "print(hash('disttest'))"],
                                  env=dict(os.environ, PYTHONHASHSEED="7"),
                                  capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual(str(self.node.call(hash, "disttest")), expected,
                         "PYTHONHASHSEED did not act: not a new interpreter")
        # Not a refusal, so no warning: the node gets the interpreter start it needs.
        self.assertEqual([e.message for e in self.events if e.kind == "warning"], [])


RUNNER = textwrap.dedent("""
    import sys, time
    from disttest.clusters.pool import ClusterPool
    from disttest.config import load_config
    from disttest.errors import CallTimeoutError
    from disttest.requirements import Requirement
    from tests.containment_nodefuncs import hold_the_gil, ignore_sigalrm, start_escapees

    config = load_config().replace(state_dir=sys.argv[1], node_start=sys.argv[3])
    node = ClusterPool(config).acquire(Requirement(size=1)).nodes[0]
    escapees = node.call(start_escapees)
    if sys.argv[2] == "gil-no-alarm":  # what a spawned node's parent-death timer needs
        node.call(ignore_sigalrm)
    if sys.argv[2].startswith("gil"):
        node.submit(hold_the_gil)
        while "holding the GIL" not in node.logs():
            time.sleep(0.01)
        while True:  # held once the node cannot even answer a ping
            try:
                node.ping(timeout=0.5)
            except CallTimeoutError:
                break
    print(node.pid, *escapees, flush=True)
    time.sleep(600)
""")


class RunnerDeath(unittest.TestCase):
    node_start = "spawn"

    def run_and_kill(self, mode: str) -> list[int]:
        pids = support.pids_left_by_a_killed_runner(self, RUNNER, support.STATE_DIR, mode,
                                                    self.node_start)
        self.assertEqual(len(pids), 3, "the runner printed no pids")
        return pids

    def test_the_runners_death_ends_the_node_and_what_it_started(self):
        pids = self.run_and_kill("plain")
        self.assertTrue(support.wait_for(lambda: gone(pids), timeout=10),
                        f"still running after the runner's SIGKILL: "
                        f"{[p for p in pids if not support.gone(p)]}")

    def test_a_node_holding_the_gil_ends_with_its_runner(self):
        node, *_ = self.run_and_kill("gil")
        # It cannot notice its stdin closing; the kernel ends it after the
        # parent-death grace period. (What it started is the template's to end:
        # a spawned node's is left -- documented.)
        self.assertTrue(support.wait_for(lambda: gone([node]),
                                         timeout=containment.DEATH_GRACE_S + 15),
                        f"node {node}, stuck holding the GIL, outlived its runner")


class RunnerDeathWithForkedNodes(RunnerDeath):
    node_start = "template"

    def test_a_stuck_node_that_ignores_sigalrm_still_ends_with_its_runner(self):
        # A spawned node's own timer is SIGALRM; the template ends its nodes itself.
        pids = self.run_and_kill("gil-no-alarm")
        self.assertTrue(support.wait_for(lambda: gone(pids),
                                         timeout=containment.DEATH_GRACE_S + 15),
                        f"still running after the runner's SIGKILL: "
                        f"{[p for p in pids if not support.gone(p)]}")

    def test_cluster_clean_in_the_grace_period_leaves_nothing(self):
        # The killed runner's template still waits for its stuck node: `cluster
        # clean` stops it, its node, and what the node started, all proved ours
        # by the dead run's cluster directory they are below.
        pids = self.run_and_kill("gil")
        template_pid = parent_of(pids[0])
        clean = support.run_python(["-m", "disttest", "cluster", "clean"],
                                   env={"DISTTEST_STATE_DIR": support.STATE_DIR})
        self.assertEqual(clean.returncode, 0, clean)
        # Well within the grace period (the template alone would wait it out).
        self.assertTrue(support.wait_for(lambda: gone(pids), timeout=5),
                        f"still running after cluster clean: "
                        f"{[p for p in pids if not support.gone(p)]}\n{clean.stdout}")
        # Another suite's `cluster clean` (same user, same machine) may have been first.
        if f"orphaned node process {template_pid}" in clean.stdout:
            self.assertIn(f"removed orphaned node process {template_pid} and 3 process(es) it "
                          "started", clean.stdout)

    def test_what_a_node_holding_the_gil_started_ends_with_its_runner(self):
        pids = self.run_and_kill("gil")
        # The template ends the stuck node after the grace period, then what
        # it had started (re-parented to the template once the node is gone).
        self.assertTrue(support.wait_for(lambda: gone(pids),
                                         timeout=containment.DEATH_GRACE_S + 15),
                        f"still running after the runner's SIGKILL: "
                        f"{[p for p in pids if not support.gone(p)]}")


if __name__ == "__main__":
    unittest.main()
