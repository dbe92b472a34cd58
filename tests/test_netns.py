"""NetnsNetwork: real network namespaces, cut and slowed by routes and TUN devices.

Needs root on Linux (``unavailable()`` says why not, and the module is skipped
then). The network-level tests (tests/netns_cases.py, shared with the
unprivileged mode) run here against the machine's namespaces; the tests of
this module add what only root's namespaces have: names on the machine,
leftovers of a killed controller, the refusal without root.

The end-to-end test runs ``python -m disttest`` on a small project whose
class declares ``network = "netns"``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import types
import unittest
from unittest import mock
from pathlib import Path

from disttest.clusters import netns, netns_host
from disttest.clusters.netns import NetnsNetwork, cleanup_leftovers
from disttest.errors import ClusterStartError, NetworkModeError

REPO = Path(__file__).resolve().parent.parent
WHY_NOT = netns.unavailable()
if WHY_NOT:
    raise unittest.SkipTest(f"netns mode cannot work here: {WHY_NOT}")

from tests.netns_cases import (  # noqa: F401  (each runs here against NetnsNetwork)
    AddressTests, DelayTests, OneWayCutTests, PartitionTests, StateAndErrorTests)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def links() -> set[str]:
    return {link["ifname"] for link in json.loads(ip("-j", "link", "show"))}


class LifetimeTests(unittest.TestCase):

    def test_close_removes_every_namespace_and_link_and_kills_what_is_inside(self):
        warnings = []
        events = types.SimpleNamespace(emit=lambda kind, **data: warnings.append(data))
        net = NetnsNetwork("closing", events=events)
        boots = [net.add_node_boot(name) for name in ("x", "y")]
        names = {net.namespace("x"), net.namespace("y")}
        net.delay("x", "y", 1)  # makes both TUN devices
        self.assertLessEqual(names, namespaces())
        made = {name for name in links() if net.bridge[3:] in name}
        self.assertEqual(len(made), 3, made)  # the bridge and two veths (TUNs are inside)
        sleeper = subprocess.Popen(boots[0]["exec_prefix"] + ["sleep", "30"])
        self.addCleanup(sleeper.wait)
        time.sleep(0.1)

        net.close()
        net.close()  # idempotent
        self.assertEqual(names & namespaces(), set())
        self.assertEqual({name for name in links() if net.bridge[3:] in name}, set())
        self.assertEqual(sleeper.wait(5), -9)
        self.assertIn(str(sleeper.pid), warnings[-1]["message"])
        for call in (lambda: net.partition(["x"]), lambda: net.add_node_boot("z"),
                     lambda: net.heal()):
            with self.assertRaisesRegex(NetworkModeError, "closed"):
                call()

    def test_cleanup_leftovers_removes_what_a_killed_controller_left_only(self):
        controller = subprocess.Popen([sys.executable, "-c", KILLED], cwd=REPO,
                                      env=dict(os.environ, PYTHONPATH=str(REPO)),
                                      stdout=subprocess.PIPE, text=True)
        self.addCleanup(controller.stdout.close)
        left = json.loads(controller.stdout.readline())
        mine = f"{netns.NS_PREFIX}{netns_host.owner_name()}-alive-0"  # a live owner's: kept
        ip("netns", "add", mine)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", mine])
        # What cleanup_leftovers() does, under the lock it takes: so that no other
        # run on this machine cleans up in between.
        with netns_host.machine_lock():
            controller.kill()  # no chance to clean up
            controller.wait()
            self.assertLessEqual(set(left["namespaces"]), namespaces())
            self.assertLessEqual(set(left["links"]), links())
            removed = netns_host.remove_leftovers()
        self.assertNotIn(mine, cleanup_leftovers())
        self.assertLessEqual(set(left["namespaces"]) | set(left["links"]), set(removed))
        self.assertNotIn(mine, removed)
        self.assertEqual(set(left["namespaces"]) & namespaces(), set())
        self.assertEqual(set(left["links"]) & links(), set())
        self.assertIn(mine, namespaces())
        self.assertIsNotNone(left["sleeper_start"])
        self.assertIsNone(netns_host.start_time(left["sleeper"]),  # killed (maybe a zombie)
                          "the process left inside a namespace still runs")

    def test_without_root_it_says_why(self):
        with mock.patch("os.geteuid", return_value=1000):
            reason = netns.unavailable()
            self.assertIn("root", reason)
            self.assertIn("uid 1000", reason)
            with self.assertRaises(ClusterStartError) as caught:
                NetnsNetwork("c1")
        self.assertEqual(caught.exception.diagnosis.kind, "netns-unavailable")
        self.assertEqual(caught.exception.diagnosis.cause, reason)
        self.assertIn('network = "auto"', str(caught.exception))


# A controller that makes a network, then waits to be killed.
KILLED = """
import json, subprocess, time
from disttest.clusters import netns, netns_host
net = netns.NetnsNetwork("left")
boots = [net.add_node_boot(name) for name in ("x", "y")]
net.delay("x", "y", 1)
sleeper = subprocess.Popen(boots[0]["exec_prefix"] + ["sleep", "60"])
time.sleep(0.1)
print(json.dumps({"namespaces": [net.namespace("x"), net.namespace("y")],
                  "links": [l for l in json.loads(netns_host.run_command(["ip", "-j", "link", "show"]))
                            for l in [l["ifname"]] if net.bridge[3:] in l],
                  "sleeper": sleeper.pid, "sleeper_start": netns_host.start_time(sleeper.pid)}),
      flush=True)
time.sleep(60)
"""

SAMPLE = '''
import errno
import socket
import threading

import disttest
from disttest import this_node


def whoami():
    return this_node.name, this_node.host, this_node.peers("app")


def serve():
    listener = socket.create_server((this_node.host, this_node.port("app")))

    def loop():
        while True:
            try:
                conn, addr = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(addr[0].encode())

    threading.Thread(target=loop, daemon=True).start()
    this_node.on_reset(listener.close)


def ask(peer, timeout=0.5):
    try:
        with socket.create_connection(this_node.peers("app")[peer], timeout=timeout) as s:
            return s.recv(100).decode() or "closed"
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))


class NetnsCluster(disttest.DistributedTestCase):
    cluster_size = 3
    network = "netns"

    @classmethod
    def setUpCluster(cls):
        cls.cluster.call_all(serve)

    def setUp(self):
        self.addCleanup(self.cluster.heal)

    def test_every_node_has_its_own_address(self):
        seen = self.cluster.call_all(whoami)
        hosts = [host for _name, host, _peers in seen]
        self.assertEqual(len(set(hosts)), 3)
        self.assertEqual(hosts, [node.host for node in self.nodes])
        for (name, host, peers), node in zip(seen, self.nodes):
            self.assertEqual(name, node.name)
            self.assertEqual(peers, {other.name: (other.host, other.port("app"))
                                     for other in self.nodes if other is not node})

    def test_a_peer_sees_the_address_a_node_has(self):
        a, b, c = self.nodes
        self.assertEqual(a.call(ask, "node-1"), a.host)
        self.assertEqual(c.call(ask, "node-0"), c.host)

    def test_partition_and_heal(self):
        a, b, c = self.nodes
        self.cluster.partition([a], [b, c], mode="reject")
        self.assertEqual(a.call(ask, "node-1"), "EHOSTUNREACH")
        self.assertEqual(b.call(ask, "node-2"), b.host)
        self.cluster.partition([a], [b, c])
        self.assertEqual(c.call(ask, "node-0"), "timeout")
        self.cluster.heal()
        self.assertEqual(a.call(ask, "node-1"), a.host)

    def test_a_restarted_node_keeps_its_address(self):
        node = self.nodes[1]
        host, pid = node.host, node.pid
        node.restart()
        node.call(serve)
        self.assertNotEqual(node.pid, pid)
        self.assertEqual(node.call(whoami)[1], host)
        self.assertEqual(self.nodes[0].call(ask, "node-1"), self.nodes[0].host)
'''


class EndToEndTests(unittest.TestCase):

    def test_python_m_disttest_runs_a_netns_class(self):
        with tempfile.TemporaryDirectory() as project:
            Path(project, "test_netns_sample.py").write_text(SAMPLE)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DISTTEST_")}
            env.update(PYTHONPATH=str(REPO), DISTTEST_STATE_DIR=project,
                       DISTTEST_FALLBACK="fail")
            run = subprocess.Popen([sys.executable, "-m", "disttest", "-v"], cwd=project,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
            out, err = run.communicate(timeout=120)
        self.assertEqual(run.returncode, 0, out + err)
        self.assertIn("Ran 4 tests", err)
        self.assertRegex(err, r"\nOK\b")
        left = [n for n in namespaces() if n.startswith(f"{netns.NS_PREFIX}{run.pid}.")]
        self.assertEqual(left, [])
        aliases = [link.get("ifalias", "") for link in json.loads(ip("-j", "link", "show"))]
        self.assertEqual([a for a in aliases if f":{run.pid}." in a], [])


if __name__ == "__main__":
    unittest.main()
