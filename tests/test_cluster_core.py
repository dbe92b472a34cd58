"""The cluster core against real node processes and real sockets.

Calls, remote errors, serialization, crashes and the node life cycle, the
authenticated control channel, and the pool's reuse, growth and reset rules.
Nothing here is mocked: every node is a ``python -c "from disttest.agent
import main"`` process.
"""
from __future__ import annotations

import concurrent.futures
import inspect
import os
import pickle
import socket
import sys
import textwrap
import threading
import types
import unittest
import uuid

import psutil

from disttest.clusters import protocol
from disttest.clusters.ports import default_lock_dir, port_is_free
from disttest.errors import (CallTimeoutError, DisttestError, NodeCrashedError, RemoteError,
                             SerializationError)
from disttest.requirements import Requirement
from tests import support
from tests.fixtures import nodefuncs as nf

_pool = None


def setUpModule():
    global _pool
    _pool = support.make_pool()


def tearDownModule():
    support.shutdown_and_check()


def _raise_line() -> int:
    lines, start = inspect.getsourcelines(nf.raise_value_error)
    return start + next(i for i, line in enumerate(lines) if "raise ValueError" in line)


def _control_connections(node) -> int:
    """Established connections to ``node``'s control port, seen from the node."""
    proc = psutil.Process(node.pid)
    connections = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6
    return sum(1 for c in connections("tcp")
               if c.laddr.port == node.process.control_port
               and c.status == psutil.CONN_ESTABLISHED)


class SharedCluster(unittest.TestCase):
    """Base: one cluster of the module pool per class (reset between classes)."""

    requirement = Requirement(size=3)

    @classmethod
    def setUpClass(cls):
        cls.cluster = _pool.acquire(cls.requirement)

    @classmethod
    def tearDownClass(cls):
        _pool.release(cls.cluster)

    def setUp(self):
        # A test that broke a node must not hand the break to the next one.
        for node in self.cluster:
            if node.paused:
                node.resume()
            if not node.alive:
                node.restart()


class CallTests(SharedCluster):

    def test_call_with_args_and_kwargs(self):
        node = self.cluster[0]
        self.assertEqual(node.call(nf.add, 2, 3), 5)
        self.assertEqual(node.call(nf.add, a=2, b=40), 42)
        self.assertEqual(node.call(nf.describe_args, 1, "x", k=None, j=[1]),
                         {"args": (1, "x"), "kwargs": {"k": None, "j": [1]}})

    def test_return_values_of_several_types(self):
        node = self.cluster[1]
        values = [0, -7, 2 ** 80, 1.5, "ünïcode", b"\x00\xff", None, True, [1, [2]],
                  (1, "a"), {"k": {"nested": (1, 2)}}, {1, 2, 3}, frozenset({"a"}),
                  complex(1, 2), b"x" * 200_000]  # the last one spans many TCP segments
        for value in values:
            with self.subTest(type=type(value).__name__):
                result = node.call(nf.echo, value)
                self.assertEqual(result, value)
                self.assertIs(type(result), type(value))

    def test_the_call_runs_in_the_node_process(self):
        pids = [node.call(nf.getpid) for node in self.cluster]
        self.assertEqual(pids, [node.pid for node in self.cluster])
        self.assertNotIn(os.getpid(), pids)
        self.assertEqual(len(set(pids)), 3)

    def test_submit_returns_a_future(self):
        future = self.cluster[2].submit(nf.add, 20, b=22)
        self.assertIsInstance(future, concurrent.futures.Future)
        self.assertEqual(future.result(timeout=10), 42)
        failing = self.cluster[2].submit(nf.raise_value_error, "from a future")
        self.assertIsInstance(failing.exception(timeout=10), RemoteError)

    def test_call_all_returns_results_in_node_order(self):
        self.assertEqual(self.cluster.call_all(nf.getpid), [n.pid for n in self.cluster])
        self.assertEqual(self.cluster.call_all(nf.add, 1, b=1), [2, 2, 2])

    def test_call_all_runs_on_every_node_at_once(self):
        spans = self.cluster.call_all(nf.sleep_and_record, 0.5)
        starts, ends = [s for s, _ in spans], [e for _, e in spans]
        # Overlap, not speed: every call started before any of them ended.
        self.assertLess(max(starts), min(ends), spans)

    def test_call_all_raises_the_failing_nodes_error(self):
        with self.assertRaises(RemoteError) as cm:
            self.cluster.call_all(nf.fail_on, "node-1", "only node-1 fails")
        self.assertEqual(cm.exception.node, "node-1")
        self.assertEqual(cm.exception.remote_type, "RuntimeError")
        self.assertIn("only node-1 fails", str(cm.exception))

    def test_concurrent_calls_on_one_node_each_use_a_connection(self):
        node = self.cluster[0]
        name = uuid.uuid4().hex
        # Four calls that can only return once all four wait together.
        futures = [node.submit(nf.meet_at_barrier, name, 4, 10) for _ in range(4)]
        idents = [f.result(timeout=15) for f in futures]
        self.assertEqual(len(set(idents)), 4, "each call ran in its own server thread")
        self.assertGreaterEqual(_control_connections(node), 4)

    def test_sequential_calls_reuse_one_connection(self):
        node = self.cluster[1]
        node.drop_connections()
        for i in range(20):
            node.call(nf.add, i, 1)
        self.assertEqual(_control_connections(node), 1)

    def test_spawn_runs_in_the_background_and_reports_its_outcome(self):
        node = self.cluster[2]
        self.assertEqual(node.spawn(nf.add, 40, 2).result(timeout=10), 42)
        with self.assertRaises(RemoteError) as cm:
            node.spawn(nf.raise_value_error, "in the background").result(timeout=10)
        self.assertIn("in the background", str(cm.exception))
        sleeper = node.spawn(nf.sleep_and_record, 0.3)
        self.assertTrue(sleeper.running())
        self.assertEqual(len(sleeper.result(timeout=10)), 2)
        self.assertFalse(sleeper.running())

    def test_a_function_the_node_cannot_import(self):
        module = types.ModuleType("dtt_only_in_the_controller")
        exec("def f():\n    return 1\n", module.__dict__)
        sys.modules[module.__name__] = module
        self.addCleanup(sys.modules.pop, module.__name__)
        self.assertEqual(pickle.loads(pickle.dumps(module.f))(), 1)
        with self.assertRaises(RemoteError) as cm:
            self.cluster[0].call(module.f)
        self.assertEqual(cm.exception.remote_type, "ModuleNotFoundError")
        self.assertIn("dtt_only_in_the_controller", str(cm.exception))
        self.assertEqual(self.cluster[0].call(nf.add, 1, 1), 2)

    def test_ping_measures_a_round_trip(self):
        rtt = self.cluster[0].ping()
        self.assertGreater(rtt, 0)
        self.assertLess(rtt, 5)

    def test_cluster_is_a_sequence_of_nodes(self):
        cluster = self.cluster
        self.assertEqual(len(cluster), 3)
        self.assertEqual([n.name for n in cluster], ["node-0", "node-1", "node-2"])
        self.assertEqual([n.index for n in cluster], [0, 1, 2])
        self.assertIs(cluster[1], cluster.nodes[1])
        self.assertIs(cluster.node("node-2"), cluster[2])
        with self.assertRaises(DisttestError) as cm:
            cluster.node("node-9")
        self.assertIn("node-0, node-1, node-2", str(cm.exception))
        info = cluster.info()
        self.assertEqual(info["id"], cluster.id)
        self.assertEqual([n["pid"] for n in info["nodes"]], [n.pid for n in cluster])
        self.assertTrue(all(n["alive"] for n in info["nodes"]))
        self.assertTrue(cluster.healthy())

    def test_node_ports_and_addresses(self):
        ports = [n.port("app") for n in self.cluster]
        self.assertEqual(len(set(ports)), 3)
        low, high = _pool.config.port_range
        self.assertTrue(all(low <= p <= high for p in ports), ports)
        node = self.cluster[0]
        self.assertEqual(node.address(), (node.host, node.port()))
        with self.assertRaises(DisttestError) as cm:
            node.port("admin")
        self.assertIn("node_ports", str(cm.exception))


class RemoteErrorTests(SharedCluster):

    def test_remote_error_carries_type_message_and_traceback(self):
        node = self.cluster[0]
        with self.assertRaises(RemoteError) as cm:
            node.call(nf.raise_value_error, "bad input 42")
        error = cm.exception
        self.assertEqual(error.remote_type, "ValueError")
        self.assertEqual(error.node, "node-0")
        self.assertIn("bad input 42", error.diagnosis.problem)
        self.assertIn(f'nodefuncs.py", line {_raise_line()}, in raise_value_error',
                      error.remote_traceback)
        self.assertIn("ValueError: bad input 42", error.remote_traceback)
        # The agent's own frames are hidden: the traceback starts in user code.
        self.assertNotIn("agent.py", error.remote_traceback)
        self.assertIsInstance(error.remote_exception, ValueError)
        self.assertIn("bad input 42", str(error))
        self.assertIn(error.remote_traceback.rstrip(), str(error))

    def test_cluster_is_usable_after_a_remote_error(self):
        for node in self.cluster:
            with self.assertRaises(RemoteError):
                node.call(nf.raise_value_error, "boom")
            self.assertEqual(node.call(nf.add, 1, 2), 3)
        self.assertTrue(self.cluster.healthy())

    def test_remote_error_survives_pickling(self):
        with self.assertRaises(RemoteError) as cm:
            self.cluster[1].call(nf.raise_value_error, "pickled")
        original = cm.exception
        copy = pickle.loads(pickle.dumps(original))
        self.assertIsInstance(copy, RemoteError)
        self.assertEqual(copy.remote_type, original.remote_type)
        self.assertEqual(copy.remote_traceback, original.remote_traceback)
        self.assertEqual(copy.node, "node-1")
        self.assertEqual(copy.diagnosis, original.diagnosis)
        self.assertEqual(str(copy), str(original))

    def test_disttest_errors_raised_on_a_node_keep_their_type_name(self):
        with self.assertRaises(RemoteError) as cm:
            self.cluster[0].call(nf.port_of, "nope")
        self.assertEqual(cm.exception.remote_type, "disttest.errors.DisttestError")
        self.assertIn("no port named 'nope'", str(cm.exception))


class SerializationTests(SharedCluster):

    def test_unpicklable_argument_names_its_type(self):
        node = self.cluster[0]
        with self.assertRaises(SerializationError) as cm:
            node.call(nf.echo, threading.Lock())
        message = str(cm.exception)
        self.assertIn("argument 1", message)
        self.assertIn("_thread.lock", message)
        with self.assertRaises(SerializationError) as cm:
            node.call(nf.describe_args, 1, guard=threading.Lock())
        self.assertIn("keyword argument 'guard'", str(cm.exception))
        self.assertEqual(node.call(nf.add, 1, 1), 2)

    def test_unpicklable_return_value_names_its_type(self):
        node = self.cluster[1]
        with self.assertRaises(SerializationError) as cm:
            node.call(nf.make_lock)
        self.assertIn("_thread.lock", str(cm.exception))
        self.assertEqual(cm.exception.node, "node-1")
        self.assertEqual(node.call(nf.add, 2, 2), 4)
        self.assertTrue(self.cluster.healthy())

    def test_lambdas_and_closures_travel_with_cloudpickle(self):
        factor = 7

        def times(x):
            return x * factor

        node = self.cluster[2]
        self.assertEqual(node.call(lambda: 6 * 7), 42)
        self.assertEqual(node.call(times, 6), 42)
        self.assertEqual(self.cluster.call_all(lambda x: x + 1, 1), [2, 2, 2])

    def test_without_cloudpickle_the_error_says_what_to_install(self):
        code = textwrap.dedent("""
            import sys
            sys.modules["cloudpickle"] = None  # as if it were not installed
            import disttest
            from tests.fixtures import nodefuncs
            with disttest.cluster(1) as c:
                print("plain call:", c[0].call(nodefuncs.add, 1, 2))
                try:
                    c[0].call(lambda: 1)
                except disttest.SerializationError as exc:
                    print("ERROR:", exc)
            """)
        result = support.run_python(code, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("plain call: 3", result.stdout)
        self.assertIn("ERROR: the function", result.stdout)
        self.assertIn("<lambda>", result.stdout)
        self.assertIn("pip install 'disttest[cloudpickle]'", result.stdout)


class LifecycleTests(SharedCluster):
    """Crashes, kills and pauses: each test restores the nodes in setUp."""

    requirement = Requirement(size=2, env=(("DISTTEST_TESTS_ROLE", "lifecycle"),))

    def test_a_node_that_exits_raises_node_crashed_with_its_log(self):
        node = self.cluster[0]
        events = []
        _pool.events.subscribe(events.append)
        self.addCleanup(_pool.events.unsubscribe, events.append)
        with self.assertRaises(NodeCrashedError) as cm:
            node.call(nf.print_and_exit, "last words before exit", 3)
        error = cm.exception
        self.assertIn("exit status 3", str(error))
        self.assertEqual(error.node, "node-0")
        self.assertIn("last words before exit", error.log_tail)
        self.assertFalse(node.alive)
        self.assertIn("node_crashed", [e.kind for e in events])
        # Later calls say the same, without waiting.
        with self.assertRaises(NodeCrashedError):
            node.call(nf.add, 1, 1)
        self.assertFalse(self.cluster.healthy())
        self.assertTrue(self.cluster[1].alive)

    def test_restart_keeps_name_and_ports_with_a_new_pid(self):
        node = self.cluster[1]
        name, ports, old_pid = node.name, node.ports, node.pid
        node.call(nf.state_put, "before", 1)
        node.restart()
        self.assertEqual(node.name, name)
        self.assertEqual(node.ports, ports)
        self.assertNotEqual(node.pid, old_pid)
        self.assertTrue(support.gone(old_pid))
        self.assertTrue(node.alive)
        self.assertEqual(node.call(nf.getpid), node.pid)
        self.assertEqual(node.call(nf.state_items), {})
        me = node.call(nf.whoami)
        self.assertEqual((me["name"], me["port"]), (name, ports["app"]))
        self.assertEqual(me["peers"], {"node-0": self.cluster[0].address()})
        self.assertIn("restarted", node.logs())

    def test_restart_after_a_crash(self):
        node = self.cluster[0]
        with self.assertRaises(NodeCrashedError):
            node.call(nf.print_and_exit, "bye", 1)
        node.restart()
        self.assertEqual(node.call(nf.add, 2, 2), 4)
        self.assertTrue(self.cluster.healthy())

    def test_kill(self):
        node = self.cluster[0]
        pid = node.pid
        node.kill()
        self.assertFalse(node.alive)
        self.assertTrue(support.gone(pid))
        with self.assertRaises(NodeCrashedError) as cm:
            node.call(nf.add, 1, 1)
        self.assertIn("SIGKILL", str(cm.exception))
        with self.assertRaises(DisttestError) as cm:
            self.cluster.wait_healthy(timeout=0.2)
        self.assertIn("node-0", str(cm.exception))

    def test_terminate(self):
        node = self.cluster[1]
        pid = node.pid
        node.terminate()
        self.assertFalse(node.alive)
        self.assertTrue(support.gone(pid))
        with self.assertRaises(NodeCrashedError) as cm:
            node.ping()
        self.assertIn("SIGTERM", str(cm.exception))

    def test_pause_and_resume(self):
        node = self.cluster[1]
        self.assertEqual(node.call(nf.add, 1, 1), 2)
        node.pause()
        self.addCleanup(node.resume)
        self.assertTrue(node.alive, "a paused node is alive")
        with self.assertRaises(CallTimeoutError) as cm:
            node.ping(timeout=0.3)
        self.assertIn("paused", str(cm.exception))
        future = node.submit(nf.add, 2, 3)
        with self.assertRaises(concurrent.futures.TimeoutError):
            future.result(timeout=0.3)
        self.assertFalse(self.cluster.healthy())
        node.resume()
        self.assertEqual(future.result(timeout=10), 5, "the waiting call completes")
        self.assertEqual(node.call(nf.add, 2, 2), 4)
        self.assertTrue(self.cluster.healthy())

    def test_paused_node_without_an_open_connection_times_out(self):
        # Regression: opening a connection to a paused node used to wait a fixed
        # 10 s and then report a lost connection instead of a timeout.
        node = self.cluster[0]
        node.drop_connections()
        node.pause()
        self.addCleanup(node.resume)
        with self.assertRaises(CallTimeoutError) as cm:
            node.ping(timeout=0.3)
        self.assertIn("within 0.3s", str(cm.exception))
        node.resume()
        self.assertGreater(node.ping(), 0)

    def test_logs_hold_what_the_node_printed(self):
        node = self.cluster[0]
        marker = uuid.uuid4().hex
        lines = [f"{marker}-{i}" for i in range(1, 6)]
        node.call(nf.print_lines, *lines)
        logs = support.wait_for(lambda: lines[-1] in node.logs() and node.logs())
        for line in lines:
            self.assertIn(line, logs)
        self.assertEqual(node.logs(tail=2).splitlines(), lines[-2:])
        self.assertIn("serving on", node.logs())  # the agent's start line


class LowCallTimeoutTests(unittest.TestCase):

    def test_a_paused_node_times_out_under_a_low_call_timeout(self):
        pool = support.make_pool(call_timeout=0.5)
        self.addCleanup(pool.shutdown)
        cluster = pool.acquire(Requirement(size=1))
        node = cluster[0]
        node.pause()
        self.addCleanup(node.resume)
        with self.assertRaises(CallTimeoutError) as cm:
            node.call(nf.add, 1, 2)
        self.assertIn("did not answer add within 0.5s", str(cm.exception))
        node.resume()
        self.assertEqual(node.call(nf.add, 1, 2), 3)


class AuthenticationTests(SharedCluster):

    requirement = Requirement(size=1, env=(("DISTTEST_TESTS_ROLE", "auth"),))

    def connect(self):
        node = self.cluster[0]
        sock = socket.create_connection((node.host, node.process.control_port), timeout=5)
        self.addCleanup(sock.close)
        return sock

    def assertClosedByPeer(self, sock):
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            return
        self.assertEqual(data, b"", "the node should have closed the connection")

    def assertStillServing(self):
        node = self.cluster[0]
        node.drop_connections()  # prove a new connection is accepted too
        self.assertEqual(node.call(nf.add, 20, 22), 42)

    def test_garbage_is_refused(self):
        sock = self.connect()
        challenge = protocol.recv_frame(sock, 256)
        self.assertTrue(challenge.startswith(b"#DTCHALLENGE#"))
        sock.sendall(b"\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n")
        self.assertClosedByPeer(sock)
        self.assertStillServing()
        self.assertIn("refused a connection", support.wait_for(
            lambda: "refused" in self.cluster[0].logs() and self.cluster[0].logs()))

    def test_wrong_key_is_refused(self):
        sock = self.connect()
        with self.assertRaises(protocol.AuthenticationError):
            protocol.client_handshake(sock, b"wrong")
        self.assertClosedByPeer(sock)
        self.assertStillServing()

    def test_nothing_is_unpickled_before_authentication(self):
        target = os.path.join(self.cluster[0].boot["cwd"], f".pwned-{uuid.uuid4().hex}")
        self.addCleanup(lambda: os.path.exists(target) and os.unlink(target))

        class Evil:
            def __reduce__(self):
                return (open, (target, "w"))

        sock = self.connect()
        protocol.recv_frame(sock, 256)  # the challenge
        protocol.send_frame(sock, pickle.dumps(("call", Evil(), (), {}), protocol=2))
        self.assertEqual(protocol.recv_frame(sock, 256), b"#DTFAILURE#")
        self.assertClosedByPeer(sock)
        self.assertStillServing()
        self.assertFalse(os.path.exists(target), "the node unpickled an unauthenticated frame")

    def test_silent_client_does_not_block_others(self):
        self.connect()  # connects and never speaks
        self.assertStillServing()


class PoolTests(unittest.TestCase):
    """Reuse, growth and separation, each test with a pool of its own."""

    def setUp(self):
        self.pool = support.make_pool()
        self.addCleanup(self.pool.shutdown)
        self.events = []
        self.pool.events.subscribe(self.events.append)

    def kinds(self):
        return [e.kind for e in self.events]

    def test_node_env_reaches_the_interpreter_itself(self):
        # PYTHON* variables act at interpreter start: node_env must be in the
        # process's environment, not only applied by the agent afterwards.
        cluster = self.pool.acquire(Requirement(size=1, env=(("PYTHONOPTIMIZE", "1"),)))
        self.addCleanup(self.pool.release, cluster)
        self.assertEqual(cluster[0].call(eval, "__import__('sys').flags.optimize"), 1)
        self.assertEqual(cluster[0].call(os.getenv, "PYTHONOPTIMIZE"), "1")

    def test_equal_requirements_reuse_one_start(self):
        requirement = Requirement(size=2)
        first = self.pool.acquire(requirement)
        pids = [n.pid for n in first]
        self.pool.release(first)
        second = self.pool.acquire(requirement)
        self.assertEqual(second.id, first.id)
        self.assertEqual([n.pid for n in second], pids)
        self.assertEqual(self.kinds().count("cluster_reused"), 1)
        self.assertEqual(self.kinds().count("cluster_started"), 1)
        self.assertIn("cluster_reused", self.kinds())

    def test_a_busy_cluster_is_not_lent_twice(self):
        requirement = Requirement(size=1)
        first = self.pool.acquire(requirement)
        second = self.pool.acquire(requirement)
        self.assertNotEqual(first.id, second.id)
        self.assertNotEqual(first[0].pid, second[0].pid)
        self.assertEqual([e.kind for e in self.events].count("cluster_started"), 2)

    def test_grow_adds_nodes_to_the_same_cluster(self):
        small = self.pool.acquire(Requirement(size=2))
        pids = [n.pid for n in small]
        self.pool.release(small)
        big = self.pool.acquire(Requirement(size=4))
        self.assertEqual(big.id, small.id)
        self.assertEqual(len(big), 4)
        self.assertEqual([n.pid for n in big][:2], pids)
        self.assertEqual([n.name for n in big], [f"node-{i}" for i in range(4)])
        self.assertEqual([e.kind for e in self.events].count("cluster_started"), 1)
        self.assertEqual([e.kind for e in self.events].count("cluster_grown"), 1)
        self.assertEqual(big.call_all(nf.getpid), [n.pid for n in big])
        # Old nodes learn about the new peers.
        peers = big[0].call(nf.whoami)["peers"]
        self.assertEqual(peers, {n.name: n.address() for n in big[1:]})
        self.pool.release(big)
        # A smaller requirement gets a view of the first nodes, with matching peers.
        view = self.pool.acquire(Requirement(size=2))
        self.assertEqual(view.id, big.id)
        self.assertEqual(len(view), 2)
        self.assertEqual(view[0].call(nf.whoami)["peers"], {"node-1": view[1].address()})

    def test_fresh_requirement_is_never_reused(self):
        plain = self.pool.acquire(Requirement(size=1))
        self.pool.release(plain)
        fresh = self.pool.acquire(Requirement(size=1, fresh=True))
        self.assertNotEqual(fresh.id, plain.id, "an idle shared cluster is not lent as fresh")
        fresh_pid, fresh_ports = fresh[0].pid, list(fresh[0].ports.values())
        self.assertTrue(support.our_temp_dirs([fresh.id]))
        self.pool.release(fresh)
        self.assertTrue(support.wait_for(lambda: support.gone(fresh_pid)),
                        "a fresh cluster is stopped on release")
        # ... and gives back its ports and temp dir there and then.
        self.assertEqual(_locked_by_me(fresh_ports), [])
        self.assertEqual(support.our_temp_dirs([fresh.id]), [])
        again = self.pool.acquire(Requirement(size=1, fresh=True))
        self.assertNotIn(again.id, (fresh.id, plain.id))
        self.assertEqual([e.kind for e in self.events].count("cluster_started"), 3)

    def test_different_node_env_gets_different_clusters(self):
        blue = self.pool.acquire(Requirement(size=1, env=(("DTT_COLOUR", "blue"),)))
        self.pool.release(blue)
        red = self.pool.acquire(Requirement(size=1, env=(("DTT_COLOUR", "red"),)))
        self.assertNotEqual(red.id, blue.id)
        self.assertEqual(red[0].call(nf.getenv, "DTT_COLOUR"), "red")
        self.pool.release(red)
        blue_again = self.pool.acquire(Requirement(size=1, env=(("DTT_COLOUR", "blue"),)))
        self.assertEqual(blue_again.id, blue.id)
        self.assertEqual(blue_again[0].call(nf.getenv, "DTT_COLOUR"), "blue")

    def test_port_names_are_added_on_reuse(self):
        first = self.pool.acquire(Requirement(size=2, ports=("app",)))
        app_ports = [n.port("app") for n in first]
        self.pool.release(first)
        second = self.pool.acquire(Requirement(size=2, ports=("admin", "app")))
        self.assertEqual(second.id, first.id)
        self.assertEqual([n.port("app") for n in second], app_ports)
        admin_ports = [n.port("admin") for n in second]
        self.assertEqual(len(set(app_ports + admin_ports)), 4)
        self.assertEqual(second.call_all(nf.port_of, "admin"), admin_ports)
        self.assertEqual(second[1].call(nf.whoami, "admin")["peers"],
                         {"node-0": second[0].address("admin")})

    def test_release_and_shutdown_stop_everything(self):
        idle = self.pool.acquire(Requirement(size=2))
        busy = self.pool.acquire(Requirement(size=1, env=(("DTT_X", "1"),)))
        self.pool.release(idle)
        pids = [n.pid for n in idle] + [n.pid for n in busy]
        ports = [p for c in (idle, busy) for n in c for p in n.ports.values()]
        ids = [idle.id, busy.id]
        self.assertTrue(support.our_temp_dirs(ids))
        self.pool.shutdown()
        self.assertTrue(all(support.gone(pid) for pid in pids), pids)
        self.assertEqual(_locked_by_me(ports), [], "port locks still held after shutdown")
        self.assertEqual(support.our_temp_dirs(ids), [])
        self.assertIn("cluster_stopped", self.kinds())
        with self.assertRaises(DisttestError) as cm:
            self.pool.acquire(Requirement(size=1))
        self.assertIn("shut down", str(cm.exception))


def _locked_by_me(ports) -> list[int]:
    """Those of ``ports`` whose lock file names this process as holder."""
    held = []
    for port in ports:
        try:
            text = (default_lock_dir() / f"{port}.lock").read_text()
        except OSError:
            continue
        if text.strip() == str(os.getpid()):
            held.append(port)
    return held


class ResetTests(unittest.TestCase):
    """What a node looks like to its next user."""

    def setUp(self):
        self.pool = support.make_pool(cleanup_timeout=0.5)
        self.addCleanup(self.pool.shutdown)
        self.events = []
        self.pool.events.subscribe(self.events.append)

    def test_reset_gives_the_next_user_a_clean_node(self):
        requirement = Requirement(size=2)
        cluster = self.pool.acquire(requirement)
        node = cluster[0]
        pids = [n.pid for n in cluster]
        marker = uuid.uuid4().hex
        node.call(nf.state_put, "k", "v")
        self.assertEqual(node.call(nf.state_items), {"k": "v"})
        node.call(nf.register_reset_marker, marker)
        server = node.spawn(nf.serve_app_port)

        def greeting():
            try:
                with socket.create_connection(node.address("app"), timeout=1) as sock:
                    return sock.recv(100)
            except OSError:
                return None

        self.assertEqual(support.wait_for(greeting, timeout=5), b"hello from node-0\n")
        self.assertTrue(server.running())
        self.assertFalse(port_is_free(node.host, node.port("app")))
        self.assertNotIn(marker, node.call(nf.reset_log))

        self.pool.release(cluster)
        again = self.pool.acquire(requirement)

        self.assertEqual(again.id, cluster.id)
        self.assertEqual([n.pid for n in again], pids, "a clean reset keeps the processes")
        self.assertEqual([e.kind for e in self.events].count("node_replaced"), 0)
        self.assertEqual([e.kind for e in self.events].count("cluster_reset"), 1)
        node = again[0]
        self.assertEqual(node.call(nf.state_items), {})
        self.assertEqual(node.call(nf.reset_log).count(marker), 1)
        self.assertTrue(port_is_free(node.host, node.port("app")))
        with self.assertRaises(DisttestError) as cm:
            server.result(timeout=2)
        self.assertIn("stopped by a reset", str(cm.exception))

        # Callbacks run once: the next reset does not run them again.
        self.pool.release(again)
        third = self.pool.acquire(requirement)
        self.assertEqual(third[0].call(nf.reset_log).count(marker), 1)

    def test_a_node_whose_reset_fails_is_replaced(self):
        requirement = Requirement(size=2)
        cluster = self.pool.acquire(requirement)
        stuck, fine = cluster[1], cluster[0]
        stuck_pid, fine_pid, ports = stuck.pid, fine.pid, stuck.ports
        stuck.spawn(nf.ignore_stopping, 60)
        stuck.call(nf.state_put, "dirty", True)

        self.pool.release(cluster)
        again = self.pool.acquire(requirement)

        self.assertEqual(again.id, cluster.id)
        self.assertEqual(again[0].pid, fine_pid)
        self.assertNotEqual(again[1].pid, stuck_pid, "a dirty node is never lent again")
        self.assertTrue(support.wait_for(lambda: support.gone(stuck_pid)))
        self.assertEqual((again[1].name, again[1].ports), ("node-1", ports))
        self.assertEqual(again[1].call(nf.state_items), {})
        self.assertEqual([e.kind for e in self.events].count("node_replaced"), 1)
        replaced = [e for e in self.events if e.kind == "node_replaced"]
        self.assertEqual([e.node for e in replaced], ["node-1"])
        self.assertIn("still running", " ".join(replaced[0].reasons))
        self.assertEqual(again[1].call(nf.whoami)["peers"], {"node-0": again[0].address()})

    def test_a_port_left_in_use_names_its_holder(self):
        requirement = Requirement(size=1)
        cluster = self.pool.acquire(requirement)
        pid = cluster[0].pid
        port = cluster[0].call(nf.hold_app_port)
        self.pool.release(cluster)
        again = self.pool.acquire(requirement)
        self.assertNotEqual(again[0].pid, pid)  # replaced, not lent with a busy port
        reasons = " ".join(e for ev in self.events if ev.kind == "node_replaced"
                           for e in ev.reasons)
        self.assertIn(f":{port}) is still in use after reset", reasons)
        self.assertRegex(reasons, rf"port {port} is held by .*pid {pid}\b")

    def test_a_node_left_paused_is_resumed_not_replaced(self):
        requirement = Requirement(size=1)
        cluster = self.pool.acquire(requirement)
        pid = cluster[0].pid
        cluster[0].pause()
        self.pool.release(cluster)
        again = self.pool.acquire(requirement)
        self.assertEqual(again[0].pid, pid)
        self.assertFalse(again[0].paused)
        self.assertEqual(again[0].call(nf.add, 1, 2), 3)
        self.assertEqual([e.kind for e in self.events].count("node_replaced"), 0)

    def test_failing_reset_callback_or_dead_node_is_replaced(self):
        requirement = Requirement(size=2)
        cluster = self.pool.acquire(requirement)
        pids = [n.pid for n in cluster]
        cluster[0].call(nf.raise_on_reset, "cannot shut down")
        cluster[1].kill()
        self.pool.release(cluster)
        again = self.pool.acquire(requirement)
        self.assertEqual(again.id, cluster.id)
        self.assertTrue(all(a.pid != b for a, b in zip(again, pids)))
        self.assertTrue(again.healthy())
        reasons = {e.node: " ".join(e.reasons) for e in self.events if e.kind == "node_replaced"}
        self.assertIn("cannot shut down", reasons["node-0"])
        self.assertIn("not running", reasons["node-1"])


if __name__ == "__main__":
    unittest.main()
