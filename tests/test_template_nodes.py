"""Nodes forked from a preloaded template (``node_start = "template"``).

A forked node must be indistinguishable from a spawned one except in speed:
every ``this_node`` field, its environment, descriptors, session and signal
state are compared with a spawned node of the same shape. Restarts and
growth fork too; a template that cannot fork safely (a thread or an open
descriptor left by preloading, a module that does not import) is refused
with one warning and the nodes are spawned, as are, silently, nodes with
``PYTHON*`` variables in ``node_env``; and forked nodes still end with their
controller. Template nodes are the default (``node_start``). Real processes
throughout; Linux only (``fork`` with ``SCM_RIGHTS``).
"""
from __future__ import annotations

import os
import shutil
import re
import subprocess
import tempfile
import textwrap
import unittest
from pathlib import Path

from disttest import containment
from disttest.clusters import template
from disttest.errors import ClusterStartError, ConfigError
from disttest.requirements import Requirement
from tests import support
from tests.template_nodefuncs import describe, interpreter_flag, loaded, parent

SHAPE = Requirement(size=2, ports=("app", "raft"), env=(("TEMPLATE_TEST_MARK", "x y"),))


def setUpModule():
    if not template.supported():
        raise unittest.SkipTest("template nodes need fork() and SCM_RIGHTS: "
                                "elsewhere nodes are spawned (documented)")


def tearDownModule():
    support.shutdown_and_check()


kill_quietly = support.kill_quietly


def template_pids(pool) -> set[int]:
    return {t.popen.pid for t in pool.launchers[False].templates.values()
            if isinstance(t, template.Template)}


def warnings_of(pool) -> list[str]:
    found: list[str] = []
    pool.events.subscribe(lambda e: found.append(e.message) if e.kind == "warning" else None)
    return found


def normalized(description: dict, cluster_id: str) -> dict:
    """``description`` without what differs between any two clusters: the id, port numbers."""
    fields = dict(description["this_node"])
    assert fields.pop("cluster_id") == cluster_id
    fields["ports"] = sorted(fields["ports"])
    fields["peers"] = {name: {peer: host for peer, (host, _port) in peers.items()}
                       for name, peers in fields["peers"].items()}
    shown = {k: v for k, v in description.items() if k not in ("this_node", "random")}
    # The node's own directory (its cwd, TMPDIR) is in its cluster's directory.
    own_dir = re.compile(rf"disttest-{re.escape(cluster_id)}-[^/]+")
    shown["env"] = {k: own_dir.sub("<cluster dir>", v) for k, v in shown["env"].items()}
    shown["cwd"] = own_dir.sub("<cluster dir>", shown["cwd"])
    return {**shown, "this_node": fields}


class ForkedLikeSpawned(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.forking = support.make_pool(node_start="template")
        cls.spawning = support.make_pool(node_start="spawn")
        cls.warnings = warnings_of(cls.forking)
        cls.forked = cls.forking.acquire(SHAPE)
        cls.spawned = cls.spawning.acquire(SHAPE)

    @classmethod
    def tearDownClass(cls):
        cls.forking.shutdown()
        cls.spawning.shutdown()

    def test_the_nodes_were_forked_from_the_template(self):
        [template_pid] = template_pids(self.forking)
        self.assertEqual([n.call(parent) for n in self.forked.nodes], [template_pid] * 2)
        self.assertEqual([n.call(parent) for n in self.spawned.nodes], [os.getpid()] * 2)
        self.assertEqual(self.warnings, [])

    def test_every_field_and_the_environment_match_a_spawned_node(self):
        for forked, spawned in zip(self.forked.nodes, self.spawned.nodes):
            mine = normalized(forked.call(describe, SHAPE.ports), self.forked.id)
            theirs = normalized(spawned.call(describe, SHAPE.ports), self.spawned.id)
            self.assertEqual(mine["env"], theirs["env"])
            self.assertEqual(mine["env"]["TEMPLATE_TEST_MARK"], "x y")
            for key in theirs:
                self.assertEqual(mine[key], theirs[key], f"{key} differs on {forked.name}")
            self.assertEqual(mine, theirs)

    def test_each_forked_node_has_its_own_random_state_and_pid(self):
        values = [n.call(describe)["random"] for n in self.forked.nodes]
        self.assertNotEqual(values[0], values[1])
        pids = {n.pid for n in self.forked.nodes} | template_pids(self.forking)
        self.assertEqual(len(pids), 3)

    def test_forked_nodes_share_the_hash_seed_unless_node_env_sets_one(self):
        # The documented limit, and its documented way out.
        self.assertEqual(len({n.call(hash, "a str") for n in self.forked.nodes}), 1)
        own = self.forking.acquire(Requirement(size=2, env=(("PYTHONHASHSEED", "random"),)))
        self.assertEqual(len({n.call(hash, "a str") for n in own.nodes}), 2)  # interpreters
        self.forking.release(own)

    def test_logs_are_the_nodes_own(self):
        for node in self.forked.nodes:
            self.assertIn(f"node {node.name} of cluster {self.forked.id} (pid {node.pid})",
                          node.logs())


class RestartAndGrowth(unittest.TestCase):

    def setUp(self):
        self.pool = support.make_pool(node_start="template")
        self.addCleanup(self.pool.shutdown)

    def test_restart_forks_a_new_process_that_answers_as_the_same_node(self):
        cluster = self.pool.acquire(Requirement(size=2))
        [template_pid] = template_pids(self.pool)
        node = cluster.nodes[1]
        before = node.pid
        node.restart()
        self.assertNotEqual(node.pid, before)
        self.assertTrue(support.wait_for(lambda: support.gone(before)))
        self.assertEqual(node.call(parent), template_pid)
        self.assertEqual(node.call(describe)["this_node"]["name"], "node-1")

    def test_a_node_forked_later_has_the_controllers_environment_of_then(self):
        cluster = self.pool.acquire(Requirement(size=1))
        os.environ["TEMPLATE_LATE_VARIABLE"] = "set after the template started"
        self.addCleanup(os.environ.pop, "TEMPLATE_LATE_VARIABLE", None)
        removed = os.environ.pop(support.OWNER_VAR)
        self.addCleanup(os.environ.__setitem__, support.OWNER_VAR, removed)
        node = cluster.nodes[0]
        node.restart()
        env = node.call(describe)["env"]
        self.assertEqual(env["TEMPLATE_LATE_VARIABLE"], "set after the template started")
        self.assertNotIn(support.OWNER_VAR, env)
        self.assertEqual(node.call(parent), next(iter(template_pids(self.pool))))

    def test_a_killed_node_reports_its_signal_like_a_spawned_one(self):
        cluster = self.pool.acquire(Requirement(size=1))
        node = cluster.nodes[0]
        node.kill()
        self.assertFalse(node.alive)
        self.assertEqual(node.process.returncode, -9)

    def test_a_grown_cluster_forks_its_new_nodes(self):
        small = self.pool.acquire(Requirement(size=1))
        self.pool.release(small)
        big = self.pool.acquire(Requirement(size=3))
        self.assertEqual(big.id, small.id)
        [template_pid] = template_pids(self.pool)
        self.assertEqual({n.call(parent) for n in big.nodes}, {template_pid})

    def test_shutdown_ends_the_template(self):
        self.pool.acquire(Requirement(size=1))
        pids = template_pids(self.pool)
        self.pool.shutdown()
        self.assertTrue(support.wait_for(lambda: all(support.gone(p) for p in pids)))


class Refused(unittest.TestCase):
    """Preloading that is not safe to fork, or a configuration that is not: a new
    interpreter per node, started by a template that preloads nothing (it keeps
    what the node leaves, as for a forked node: tests/test_containment.py)."""

    def start(self, requirement=Requirement(size=1), **settings):
        pool = support.make_pool(node_start="template", **settings)
        self.addCleanup(pool.shutdown)
        warnings = warnings_of(pool)
        cluster = pool.acquire(requirement)
        [keeper] = template_pids(pool)
        self.assertEqual({n.call(parent) for n in cluster.nodes}, {keeper},
                         "the node was not started by the template")
        return warnings, cluster.nodes

    def assert_refused(self, words: str, module: str, **settings) -> None:
        warnings, [node] = self.start(**settings)
        self.assertFalse(node.call(loaded, module),
                         "the node was forked from a template that preloaded it")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("node template refused, spawning these nodes instead", warnings[0])
        self.assertIn(words, warnings[0])

    def test_a_module_that_starts_a_thread_at_import(self):
        self.assert_refused("started threads (started-at-import)", "tests.template_preload_thread",
                            preload=("tests.template_preload_thread",))

    def test_a_module_that_opens_a_socket_at_import(self):
        self.assert_refused("left descriptors open", "tests.template_preload_socket",
                            preload=("tests.template_preload_socket",))

    def test_a_module_that_cannot_be_imported(self):
        self.assert_refused("cannot preload no_such_module_here: ModuleNotFoundError",
                            "no_such_module_here", preload=("no_such_module_here",))

    def test_a_command_that_cannot_be_run_is_diagnosed_as_a_spawn_would_be(self):
        # A node in a network namespace runs a command of its own (ip netns exec,
        # nsenter): the template runs it, and reports a failed exec as Popen does.
        pool = support.make_pool(node_start="template")
        self.addCleanup(pool.shutdown)
        node = pool.acquire(Requirement(size=1)).nodes[0]
        boot = dict(node.boot, exec_prefix=["/nonexistent/tool", "--"])
        log = Path(tempfile.mkdtemp(prefix="disttest-tests-")) / "node.log"
        self.addCleanup(shutil.rmtree, log.parent)
        with self.assertRaises(ClusterStartError) as caught:
            pool.launchers[False].start([boot], [log], 10.0)
        d = caught.exception.diagnosis
        self.assertEqual(d.kind, "spawn-executable")
        self.assertIn("the program '/nonexistent/tool' cannot be executed "
                      "(No such file or directory)", d.cause)
        self.assertEqual(template_pids(pool), {node.call(parent)}, "the template ended")

    def test_python_variables_in_node_env_spawn_without_a_warning(self):
        # Not a refusal: such nodes need an interpreter start of their own, which
        # is what they get, as with node_start = "spawn".
        warnings, nodes = self.start(Requirement(size=2, env=(("PYTHONHASHSEED", "0"),)))
        # Read at interpreter start: it acts only in a new interpreter.
        self.assertEqual([n.call(interpreter_flag, "hash_randomization") for n in nodes], [0, 0])
        self.assertEqual(warnings, [])

RUNNER = textwrap.dedent("""
    import sys, time
    from disttest.clusters.pool import ClusterPool
    from disttest.config import load_config
    from disttest.errors import CallTimeoutError
    from disttest.requirements import Requirement
    from tests.containment_nodefuncs import hold_the_gil, start_escapees

    pool = ClusterPool(load_config().replace(state_dir=sys.argv[1], node_start="template"))
    nodes = pool.acquire(Requirement(size=2)).nodes
    [template] = [t for t in pool.launchers[False].templates.values()]
    if sys.argv[2] == "gil":
        nodes[0].submit(hold_the_gil)
        while "holding the GIL" not in nodes[0].logs():
            time.sleep(0.01)
        while True:  # held once the node cannot even answer a ping
            try:
                nodes[0].ping(timeout=0.5)
            except CallTimeoutError:
                break
    print(template.popen.pid, *[n.pid for n in nodes], *nodes[1].call(start_escapees), flush=True)
    time.sleep(600)
""")


@unittest.skipUnless(containment.supported(), "parent-death signals are Linux prctl()")
class ControllerDeath(unittest.TestCase):

    def run_and_kill(self, mode: str) -> list[int]:
        pids = support.pids_left_by_a_killed_runner(self, RUNNER, support.STATE_DIR, mode)
        self.assertEqual(len(pids), 5, "the runner printed no pids")
        return pids

    def test_the_template_its_nodes_and_what_they_started_end_with_the_controller(self):
        pids = self.run_and_kill("plain")
        self.assertTrue(support.wait_for(lambda: all(support.gone(p) for p in pids), timeout=10),
                        f"still running: {[p for p in pids if not support.gone(p)]}")

    def test_a_forked_node_holding_the_gil_ends_with_its_controller(self):
        pids = self.run_and_kill("gil")
        self.assertTrue(support.wait_for(lambda: all(support.gone(p) for p in pids),
                                         timeout=containment.DEATH_GRACE_S + 15),
                        f"still running: {[p for p in pids if not support.gone(p)]}")


SAMPLE_TEST = textwrap.dedent("""
    import os, sys
    import disttest


    def loaded(name):
        return name in sys.modules


    def parent():
        return os.getppid()


    class Preloading(disttest.DistributedTestCase):
        cluster_size = 2
        preload = ("xml.dom.minidom",)

        def test_forked_from_a_template_that_preloaded_the_module(self):
            parents = set(self.cluster.call_all(parent))
            self.assertEqual(len(parents), 1)
            self.assertNotIn(os.getpid(), parents)
            self.assertEqual(self.cluster.call_all(loaded, "xml.dom.minidom"), [True, True])
            self.cluster.nodes[0].restart()
            self.assertEqual(set(self.cluster.call_all(parent)), parents)


    class Plain(disttest.DistributedTestCase):
        cluster_size = 1

        def test_not_preloaded_for_this_class(self):
            self.assertNotEqual(self.cluster.nodes[0].call(parent), os.getpid())
            self.assertEqual(self.cluster.nodes[0].call(loaded, "xml.dom.minidom"), False)
    """)


class Project(unittest.TestCase):
    """``node_start`` in a project's configuration and ``preload`` on a class, end to end."""

    def test_a_project_runs_its_classes_on_forked_nodes(self):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "pyproject.toml").write_text('[tool.disttest]\nnode_start = "template"\n'
                                                  "reuse_clusters = false\n")
            Path(tmp, "test_sample_template.py").write_text(SAMPLE_TEST)
            result = support.run_python(["-m", "disttest", "test_sample_template", "-v"],
                                        cwd=tmp, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("Ran 2 tests", result.stderr + result.stdout)
        self.assertNotIn("node template refused", result.stderr + result.stdout)

    def test_a_bad_preload_attribute_is_a_configuration_error(self):
        from disttest.requirements import requirement_of

        class Declared:
            preload = "json"

        with self.assertRaises(ConfigError) as caught:
            requirement_of(Declared)
        self.assertIn("preload", str(caught.exception))
        self.assertIn("a tuple of module names", str(caught.exception))


class Settings(unittest.TestCase):

    def load(self, **variables):
        from disttest.config import load_config

        with self.assertRaises(ConfigError) as caught:
            load_config(support.REPO, environ={**support.python_env(), **variables})
        return str(caught.exception)

    def test_node_start_allows_spawn_and_template_only(self):
        self.assertIn("one of spawn, template", self.load(DISTTEST_NODE_START="fork"))

    def test_preload_names_modules(self):
        message = self.load(DISTTEST_PRELOAD="json, not a module")
        self.assertIn("'not a module' is not a module name", message)


if __name__ == "__main__":
    unittest.main()
