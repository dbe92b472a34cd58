"""The network-level tests of the namespace modes, shared by tests/test_netns.py
(the machine's namespaces, as root) and tests/test_userns_network.py (an
unprivileged user namespace).

Three processes stand in for nodes "a", "b" and "c", each started in its
namespace with the ``exec_prefix`` the network returns, as the launcher does.
Each serves TCP and UDP echo on port 7000 of its address and takes orders on
stdin (one JSON line each): connect to a peer, make a round trip on a
connection it holds, send a datagram, report what it received. So every packet
in these tests really crosses the namespaces' routes.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time
import types
import unittest

from disttest.clusters.netns import NetnsNetwork
from tests import support
from tests.fault_cases import FaultStateCases

NODES = ("a", "b", "c")
PORT = 7000
SILENCE = 0.4   # how long a dropped exchange must stay unanswered
QUICK = 0.5     # how soon a rejected one must fail

# A node stand-in; orders on stdin, one JSON answer per order on stdout.
NODE = r'''
import errno, json, socket, sys, threading, time
host = sys.argv[1]
got = {"tcp": 0, "udp": []}
conns = {}

def echo(conn, addr):
    with conn:
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            got["tcp"] += len(data)
            conn.sendall(addr[0].encode() if data == b"who" else data)

def tcp_server(listener):
    while True:
        conn, addr = listener.accept()
        threading.Thread(target=echo, args=(conn, addr), daemon=True).start()

def udp_server(sock):
    while True:
        got["udp"].append(sock.recv(100).decode())

def failure(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    return errno.errorcode.get(exc.errno, repr(exc))

def receive(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return "closed"
        data += chunk
    return data.decode()

def obey(order):
    op = order["op"]
    if op == "ask":   # a new connection, one exchange
        with socket.create_connection((order["peer"], %(port)d), timeout=order["timeout"]) as s:
            s.sendall(order.get("data", "ping").encode())
            return s.recv(100).decode() or "closed"
    if op == "open":
        sock = socket.create_connection((order["peer"], %(port)d), timeout=5)
        conns[len(conns)] = sock
        return len(conns) - 1
    if op == "trip":  # one exchange on a connection held open
        sock = conns[order["id"]]
        sock.settimeout(order["timeout"])
        sock.sendall(b"ping")
        return receive(sock, 4)
    if op == "send":
        conns[order["id"]].sendall(b"ping")
        return "sent"
    if op == "recv":
        sock = conns[order["id"]]
        sock.settimeout(order["timeout"])
        return receive(sock, 4)
    if op == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            for text in order["data"]:
                sock.sendto(text.encode(), (order["peer"], %(port)d))
        return "sent"
    if op == "got":
        return {"tcp": got["tcp"], "udp": list(got["udp"])}
    if op == "forget":
        got["tcp"] = 0
        got["udp"].clear()  # in place: the UDP thread holds the list while it waits
        for sock in conns.values():
            sock.close()
        conns.clear()
        return "ok"
    raise ValueError(op)

# Both sockets are bound before "ready": a peer's first packet finds them.
listener = socket.create_server((host, %(port)d))
datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
datagrams.bind((host, %(port)d))
threading.Thread(target=tcp_server, args=(listener,), daemon=True).start()
threading.Thread(target=udp_server, args=(datagrams,), daemon=True).start()
print(json.dumps("ready"), flush=True)
for line in sys.stdin:
    started = time.monotonic()
    try:
        result = obey(json.loads(line))
    except OSError as exc:
        result = failure(exc)
    print(json.dumps([result, time.monotonic() - started]), flush=True)
''' % {"port": PORT}


class Stand:
    """A node stand-in process in its namespace."""

    def __init__(self, boot: dict) -> None:
        self.host = boot["host"]
        self.process = subprocess.Popen(boot["exec_prefix"] + [sys.executable, "-c", NODE,
                                                               self.host],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def ready(self) -> None:
        line = self.process.stdout.readline()
        if json.loads(line or "null") != "ready":
            raise AssertionError(f"node stand-in on {self.host} did not start: {line!r}")

    def order(self, op: str, **args) -> tuple:
        """(result, seconds it took) of one order."""
        self.process.stdin.write(json.dumps(dict(args, op=op)) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"node stand-in on {self.host} died")
        return tuple(json.loads(line))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


class NetnsTestCase(unittest.TestCase):
    """One network of three stand-ins for the whole class; healed after each test."""

    # The network under test: the machine's namespaces here; a subclass may give
    # another host (tests/test_userns_network.py).
    make_network = staticmethod(lambda: NetnsNetwork("tests"))

    @classmethod
    def setUpClass(cls) -> None:
        cls.net = cls.make_network()
        cls.addClassCleanup(cls.net.close)
        cls.stands = {name: Stand(cls.net.add_node_boot(name)) for name in NODES}
        for stand in cls.stands.values():
            cls.addClassCleanup(stand.stop)
        for stand in cls.stands.values():
            stand.ready()
        for observer in NODES:
            for peer in NODES:
                if observer != peer:
                    cls.net.add_route(observer, peer, "echo", (cls.stands[peer].host, PORT))

    def setUp(self) -> None:
        self.addCleanup(self._forget)
        self.addCleanup(self.net.heal)

    def _forget(self) -> None:
        for stand in self.stands.values():
            stand.order("forget")

    # -- orders --------------------------------------------------------------------
    def ask(self, observer: str, peer: str, timeout: float = SILENCE, data: str = "ping"):
        return self.stands[observer].order("ask", peer=self.stands[peer].host,
                                           timeout=timeout, data=data)

    def open(self, observer: str, peer: str) -> tuple[str, int]:
        conn_id, _ = self.stands[observer].order("open", peer=self.stands[peer].host)
        self.assertIsInstance(conn_id, int, f"{observer} could not connect to {peer}")
        return observer, conn_id

    def trip(self, conn: tuple[str, int], timeout: float = SILENCE):
        return self.stands[conn[0]].order("trip", id=conn[1], timeout=timeout)

    def received(self, node: str) -> dict:
        return self.stands[node].order("got")[0]

    # -- assertions ------------------------------------------------------------------
    def assertWorks(self, observer: str, peer: str) -> None:
        self.assertEqual(self.ask(observer, peer)[0], "ping", f"{observer} → {peer}")

    def assertDropped(self, observer: str, peer: str) -> None:
        result, seconds = self.ask(observer, peer)
        self.assertEqual(result, "timeout", f"{observer} → {peer}")
        self.assertGreaterEqual(seconds, SILENCE - 0.05)

    def assertRejected(self, observer: str, peer: str) -> None:
        result, seconds = self.ask(observer, peer, timeout=5)
        self.assertEqual(result, "EHOSTUNREACH", f"{observer} → {peer}")
        self.assertLess(seconds, QUICK)

    def assertRoutesClean(self) -> None:
        for name in NODES:
            main = self.net.routes(name)
            self.assertEqual(len(main), 1, main)  # the subnet's own route only
            self.assertEqual(self.net.routes(name, table=213), [])


class AddressTests(NetnsTestCase):

    def test_each_node_has_its_own_address_and_reaches_the_others(self):
        hosts = {name: self.net.address(name) for name in NODES}
        self.assertEqual(len(set(hosts.values())), 3)
        for name, host in hosts.items():
            self.assertIn(ipaddress.ip_address(host), self.net.subnet)
            self.assertEqual(self.stands[name].host, host)
        for observer in NODES:
            for peer in NODES:
                if observer != peer:  # the peer sees the observer's own address
                    self.assertEqual(self.ask(observer, peer, data="who")[0], hosts[observer])
        for host in hosts.values():  # and the controller reaches every node
            with self.net.dial((host, PORT), timeout=2) as sock:
                sock.sendall(b"who")
                self.assertEqual(sock.recv(100).decode(), self.net.gateway)

    def test_add_route_returns_the_target_and_routes_for_lists_them(self):
        self.assertEqual(self.net.routes_for("a"),
                         {"b": {"echo": (self.stands["b"].host, PORT)},
                          "c": {"echo": (self.stands["c"].host, PORT)}})
        net = self.net
        self.assertEqual(net.add_route("a", "b", "other", ("10.0.0.9", "81")), ("10.0.0.9", 81))
        self.assertEqual(net.routes_for("a")["b"]["other"], ("10.0.0.9", 81))
        self.assertEqual(net.add_node_boot("a")["host"], self.stands["a"].host)  # once


class PartitionTests(NetnsTestCase):

    def test_drop_partition_silences_new_and_open_connections_across_the_cut(self):
        across, inside = self.open("a", "b"), self.open("b", "c")
        self.assertEqual(self.trip(across)[0], "ping")
        self.net.partition(["a"], ["b", "c"])
        self.assertEqual(self.trip(across)[0], "timeout")
        self.assertDropped("a", "b")
        self.assertDropped("c", "a")
        self.assertEqual(self.trip(inside)[0], "ping")
        self.assertWorks("c", "b")
        with self.net.dial((self.stands["a"].host, PORT), timeout=2):
            pass  # the controller is never cut off

    def test_reject_partition_fails_new_connections_and_aborts_open_ones(self):
        across, inside = self.open("a", "b"), self.open("b", "c")
        back = self.open("b", "a")
        self.net.partition(["a"], ["b", "c"], mode="reject")
        for conn in (across, back):  # both ends of both connections fail at once
            result, seconds = self.trip(conn, timeout=5)
            self.assertIn(result, ("ECONNABORTED", "ECONNRESET", "EPIPE", "closed"))
            self.assertLess(seconds, QUICK)
        self.assertRejected("a", "b")
        self.assertRejected("b", "a")
        self.assertEqual(self.trip(inside)[0], "ping")

    def test_nodes_named_in_no_group_form_one_group(self):
        self.net.partition(["a"], mode="reject")
        self.assertWorks("b", "c")
        self.assertRejected("b", "a")
        self.assertEqual(self.net.history()[-1]["groups"], [["a"], ["b", "c"]])

    def test_partition_replaces_the_cuts(self):
        self.net.cut("a", "b", mode="reject")
        self.net.partition(["c"], mode="reject")
        self.assertWorks("a", "b")
        self.assertRejected("a", "c")
        cuts = {(f["from"], f["to"]) for f in self.net.faults()}
        self.assertEqual(cuts, {("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")})

    def test_isolate_cuts_one_node_and_adds_to_the_cuts(self):
        self.net.cut("a", "b", mode="reject")
        self.net.isolate(types.SimpleNamespace(name="c"), mode="reject")
        self.assertRejected("a", "c")
        self.assertRejected("c", "b")
        self.assertRejected("a", "b")  # the earlier cut stays
        self.assertEqual(len(self.net.faults()), 6)

    def test_heal_clears_every_route_and_a_dropped_connection_resumes(self):
        conn = self.open("a", "b")
        self.net.partition(["a"], ["b", "c"])
        self.net.delay("b", "c", 0.1)
        self.assertEqual(self.trip(conn)[0], "timeout")  # its "ping" is still on its way
        self.net.heal()
        self.assertEqual(self.net.faults(), [])
        self.assertRoutesClean()
        self.assertWorks("a", "b")
        # TCP sends the lost request again; the answer arrives after all.
        self.assertEqual(self.stands["a"].order("recv", id=conn[1], timeout=5)[0], "ping")


class OneWayCutTests(NetnsTestCase):
    """cut("a", "b", both_ways=False): packets from a to b are lost, b to a pass.

    New TCP connections fail both ways (a handshake needs both directions).
    """

    def test_one_way_drop(self):
        a_to_b, b_to_a = self.open("a", "b"), self.open("b", "a")
        self.net.cut("a", "b", both_ways=False)
        self.assertEqual(self.net.faults(), [{"kind": "cut", "from": "a", "to": "b",
                                              "mode": "drop"}])
        # b's request reaches a, a's answer never reaches b.
        self.assertEqual(self.trip(b_to_a)[0], "timeout")
        self.assertEqual(self.received("a")["tcp"], 4)
        # a's request never reaches b.
        self.assertEqual(self.trip(a_to_b)[0], "timeout")
        self.assertEqual(self.received("b")["tcp"], 0)
        self.assertDropped("a", "b")
        self.assertDropped("b", "a")
        self.stands["b"].order("udp", peer=self.stands["a"].host, data=["b1"])
        self.stands["a"].order("udp", peer=self.stands["b"].host, data=["a1"])
        support.wait_for(lambda: self.received("a")["udp"], timeout=10)
        self.assertEqual(self.received("a")["udp"], ["b1"])
        self.assertEqual(self.received("b")["udp"], [])

    def test_one_way_reject(self):
        self.net.cut("a", "b", both_ways=False, mode="reject")
        self.assertRejected("a", "b")
        self.assertRejected("b", "a")
        self.assertEqual(self.stands["a"].order("udp", peer=self.stands["b"].host,
                                                data=["a1"])[0], "EHOSTUNREACH")
        self.stands["b"].order("udp", peer=self.stands["a"].host, data=["b1"])
        support.wait_for(lambda: self.received("a")["udp"], timeout=10)
        self.assertEqual(self.received("a")["udp"], ["b1"])  # b→a is not cut
        self.assertWorks("a", "c")


class DelayTests(NetnsTestCase):
    """Delays are checked against their lower bounds, which hold on any machine;
    "not delayed" means faster than the delay itself, and an upper bound is the
    delay plus a margin scaled from undelayed round trips measured in the same
    test."""

    DELAY = 0.4

    def baseline(self, *conns) -> float:
        """The slowest of three undelayed round trips on each of ``conns``."""
        return max(self.trip(conn, timeout=5)[1] for conn in conns for _ in range(3))

    def test_delay_slows_one_direction_only(self):
        a_to_b, b_to_a, a_to_c = self.open("a", "b"), self.open("b", "a"), self.open("a", "c")
        base = self.baseline(a_to_b, b_to_a, a_to_c)
        self.net.delay("a", "b", self.DELAY)
        for conn in (a_to_b, b_to_a):  # a's requests are late; a's answers are late
            result, seconds = self.trip(conn, timeout=5)
            self.assertEqual(result, "ping")
            self.assertGreaterEqual(seconds, self.DELAY)
            self.assertLess(seconds, self.DELAY + 10 * base + 0.2)
        self.assertLess(self.trip(a_to_c)[1], self.DELAY)
        self.net.delay("a", "b", 0)
        self.assertEqual(self.net.faults(), [])
        self.assertLess(self.trip(a_to_b)[1], self.DELAY)

    def test_jitter_stays_within_its_bounds_and_keeps_the_order(self):
        conn = self.open("a", "b")
        base = self.baseline(conn)
        self.net.delay("a", "b", 0.2, jitter=0.1)
        times = [self.trip(conn, timeout=5) for _ in range(5)]
        upper = 0.3 + 10 * base + 0.2
        self.assertTrue(all(r == "ping" and 0.1 <= s < upper for r, s in times), (times, upper))
        numbers = [str(i) for i in range(30)]
        self.stands["a"].order("udp", peer=self.stands["b"].host, data=numbers)
        support.wait_for(lambda: len(self.received("b")["udp"]) >= 30, timeout=10)
        self.assertEqual(self.received("b")["udp"], numbers)

    def test_heal_releases_delayed_packets_at_once(self):
        self.net.delay("a", "b", 3)
        self.stands["a"].order("udp", peer=self.stands["b"].host, data=["late"])
        time.sleep(0.1)
        self.assertEqual(self.received("b")["udp"], [])
        self.net.heal()
        support.wait_for(lambda: self.received("b")["udp"], timeout=5)
        self.assertEqual(self.received("b")["udp"], ["late"])

    def test_a_cut_on_a_delayed_link_loses_what_it_holds(self):
        self.net.delay("a", "b", 0.3)
        self.stands["a"].order("udp", peer=self.stands["b"].host, data=["lost"])
        self.net.cut("a", "b")
        self.net.delay("a", "b", 0)
        time.sleep(0.4)
        self.assertEqual(self.received("b")["udp"], [])


class StateAndErrorTests(FaultStateCases, NetnsTestCase):
    """The shared fault-state cases (tests/fault_cases.py); a heal leaves no route."""

    def assertHealed(self) -> None:
        self.assertRoutesClean()
