"""ProxyNetwork: partitions, one-way cuts, latency and heal, on real sockets.

Three echo servers in this process stand in for nodes "a", "b" and "c". Each
remembers what it received and when, so a test can tell which direction of a
connection a fault stopped or slowed. Every ordered pair of nodes gets a route
to the peer's port "echo", as a cluster with ``network = "proxy"`` would.
"""
from __future__ import annotations

import hashlib
import os
import queue
import random
import select
import socket
import threading
import time
import types
import unittest

import psutil

from disttest.clusters.proxy import ProxyNetwork
from disttest.errors import NetworkModeError
from tests.fault_cases import FaultStateCases
from tests.support import run_python, wait_for

HOST = "127.0.0.1"
NODES = ("a", "b", "c")
SILENCE = 0.3   # how long a dropped connection must stay silent in these tests
QUICK = 1.0     # how soon a rejected connection must fail


class EchoServer:
    """A node stand-in: echoes what it receives and records it with its arrival time."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.address = self.listener.getsockname()[:2]
        self.received: queue.Queue = queue.Queue()  # (time.monotonic(), bytes)
        self.conns: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    self.received.put((time.monotonic(), data))
                    conn.sendall(data)
            except OSError:
                return

    def drain(self) -> None:
        """Forget what was received so far."""
        while not self.received.empty():
            self.received.get_nowait()

    def got(self, timeout: float) -> bytes | None:
        """The next chunk received within ``timeout`` seconds, or None."""
        try:
            return self.received.get(timeout=timeout)[1]
        except queue.Empty:
            return None

    def close(self) -> None:
        for sock in [self.listener] + self.conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
            except OSError:
                pass
            sock.close()
        for thread in self.threads:
            thread.join(5)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def round_trip(sock: socket.socket, data: bytes = b"ping") -> float:
    started = time.monotonic()
    sock.sendall(data)
    if recv_exactly(sock, len(data)) != data:
        raise AssertionError("echo differs")
    return time.monotonic() - started


def proxy_threads() -> int:
    return sum(t.name == "disttest-proxy" for t in threading.enumerate())


class ProxyTestCase(unittest.TestCase):

    def setUp(self) -> None:
        self.servers = {name: EchoServer() for name in NODES}
        for server in self.servers.values():
            self.addCleanup(server.close)
        self.net = ProxyNetwork()
        self.addCleanup(self.net.close)
        for observer in NODES:
            for peer in NODES:
                if observer != peer:
                    self.net.add_route(observer, peer, "echo", self.servers[peer].address)

    def connect(self, observer: str, peer: str, timeout: float = 5.0) -> socket.socket:
        """A connection made by ``observer`` to ``peer``'s echo port, through its proxy."""
        sock = socket.create_connection(self.net.routes_for(observer)[peer]["echo"],
                                        timeout=timeout)
        self.addCleanup(sock.close)
        return sock

    def assertWorks(self, sock: socket.socket) -> None:
        self.assertLess(round_trip(sock, b"hello"), 1.0)

    def assertDropped(self, sock: socket.socket) -> None:
        """No answer: the client's read times out (the bytes vanish)."""
        sock.settimeout(SILENCE)
        try:
            sock.sendall(b"anyone?")
        except OSError as exc:
            self.fail(f"a dropped connection must not fail, it failed with {exc!r}")
        with self.assertRaises(socket.timeout):
            sock.recv(100)

    def assertRejected(self, observer: str, peer: str, port: str = "echo") -> None:
        """A new connection is reset at once (in connect() already, or at the first
        read or write), not left to time out."""
        started = time.monotonic()
        with self.assertRaises((ConnectionResetError, BrokenPipeError, EOFError)):
            with socket.create_connection(self.net.routes_for(observer)[peer][port],
                                          timeout=QUICK) as sock:
                sock.sendall(b"anyone?")
                if not sock.recv(100):
                    raise EOFError
        self.assertLess(time.monotonic() - started, QUICK)

    def assertBroken(self, sock: socket.socket) -> None:
        """A connection the proxy has closed: reset, or end of stream."""
        sock.settimeout(QUICK)
        with self.assertRaises((ConnectionResetError, BrokenPipeError, EOFError)):
            if not sock.recv(100):
                raise EOFError


class RoutesTests(ProxyTestCase):

    def test_each_observer_has_its_own_address_for_each_peer(self):
        routes = self.net.routes_for("a")
        self.assertEqual(sorted(routes), ["b", "c"])
        self.assertEqual(sorted(routes["b"]), ["echo"])
        addresses = {self.net.routes_for(o)[p]["echo"] for o in NODES for p in NODES if o != p}
        self.assertEqual(len(addresses), 6)
        self.assertTrue(all(host == HOST for host, _port in addresses))
        for observer in NODES:
            for peer in NODES:
                if observer != peer:
                    sock = self.connect(observer, peer)
                    self.assertWorks(sock)
                    self.assertEqual(self.servers[peer].got(1.0), b"hello")

    def test_add_route_again_keeps_the_address_and_takes_the_new_target(self):
        first = self.net.routes_for("a")["b"]["echo"]
        old = self.connect("a", "b")
        self.assertWorks(old)
        self.assertEqual(self.servers["b"].got(1.0), b"hello")
        restarted = EchoServer()  # "b" came back on another port
        self.addCleanup(restarted.close)
        self.assertEqual(self.net.add_route("a", "b", "echo", restarted.address), first)
        self.assertEqual(self.net.add_route("a", "b", "echo", restarted.address), first)
        self.assertWorks(self.connect("a", "b"))
        self.assertEqual(restarted.got(1.0), b"hello")
        self.assertWorks(old)  # made before: still to the old target
        self.assertEqual(self.servers["b"].got(1.0), b"hello")

    def test_a_peer_that_is_down_resets_the_client(self):
        down = socket.create_server((HOST, 0))
        address = down.getsockname()[:2]
        down.close()
        self.net.add_route("a", "b", "gone", address)
        self.assertRejected("a", "b", "gone")

    def test_half_close_passes_through(self):
        sock = self.connect("a", "b")
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_exactly(sock, 10), b"last words")
        self.assertEqual(sock.recv(100), b"")  # the server closed after our EOF

    def test_bulk_transfer_arrives_intact(self):
        payload = os.urandom(1 << 20) * 8  # 8 MiB: more than the proxy buffers
        sock = self.connect("a", "b")
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        digest = hashlib.sha256()
        received = 0
        while received < len(payload):
            chunk = sock.recv(1 << 20)
            self.assertTrue(chunk, "connection closed during the transfer")
            digest.update(chunk)
            received += len(chunk)
        sender.join()
        self.assertEqual(digest.digest(), hashlib.sha256(payload).digest())


class PartitionTests(ProxyTestCase):

    def test_drop_partition_silences_new_and_existing_connections_across_the_cut(self):
        across = self.connect("a", "b")
        inside = self.connect("b", "c")
        self.assertWorks(across)
        self.net.partition(["a"], ["b", "c"])
        self.assertDropped(across)
        self.assertDropped(self.connect("a", "b"))
        self.assertDropped(self.connect("c", "a"))
        self.assertWorks(inside)
        self.assertWorks(self.connect("c", "b"))

    def test_reject_partition_resets_new_and_existing_connections_across_the_cut(self):
        across = self.connect("a", "b")
        inside = self.connect("b", "c")
        self.assertWorks(across)
        self.net.partition(["a"], ["b", "c"], mode="reject")
        self.assertBroken(across)
        self.assertRejected("a", "b")
        self.assertRejected("b", "a")
        self.assertWorks(inside)

    def test_nodes_named_in_no_group_form_one_group(self):
        self.net.partition(["a"])
        self.assertWorks(self.connect("b", "c"))
        self.assertWorks(self.connect("c", "b"))
        self.assertDropped(self.connect("b", "a"))
        self.assertEqual(self.net.history()[-1]["groups"], [["a"], ["b", "c"]])

    def test_heal_resets_cut_connections_and_new_ones_work(self):
        established = self.connect("a", "b")
        self.assertWorks(established)
        self.net.partition(["a"], ["b", "c"])
        held = self.connect("a", "b")
        self.assertDropped(established)
        self.assertDropped(held)
        self.net.heal()
        self.assertBroken(established)  # what it sent was lost: it must start over
        self.assertBroken(held)
        self.assertWorks(self.connect("a", "b"))
        self.assertEqual(self.net.faults(), [])

    @unittest.skipUnless(hasattr(select, "EPOLLRDHUP"), "needs epoll's EPOLLRDHUP (Linux)")
    def test_a_held_connection_is_let_go_when_its_client_gives_up(self):
        self.net.partition(["a"], ["b", "c"])
        proxy_port = self.net.routes_for("a")["b"]["echo"][1]
        sock = self.connect("a", "b")
        client_port = sock.getsockname()[1]
        me = psutil.Process()

        def held():
            return [c for c in me.net_connections("tcp") if c.laddr and c.raddr
                    and c.laddr[1] == proxy_port and c.raddr[1] == client_port]

        self.assertTrue(wait_for(held, 2), "the proxy should hold the connection")
        self.assertDropped(sock)
        sock.close()  # a client that retries closes and reconnects: no pile-up
        self.assertTrue(wait_for(lambda: not held(), 2), held())

    def test_partition_replaces_the_cuts_and_resets_what_it_no_longer_cuts(self):
        ab = self.connect("a", "b")
        self.net.cut("a", "b")
        self.assertDropped(self.connect("a", "b"))
        self.net.partition(["c"])
        self.assertBroken(ab)  # was cut, is not any more: closed like after heal()
        self.assertWorks(self.connect("a", "b"))
        self.assertDropped(self.connect("a", "c"))
        cuts = {(f["from"], f["to"]) for f in self.net.faults()}
        self.assertEqual(cuts, {("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")})

    def test_isolate_cuts_one_node_and_adds_to_the_cuts(self):
        self.net.cut("a", "b", mode="reject")
        self.net.isolate("c", mode="reject")
        self.assertRejected("a", "c")
        self.assertRejected("c", "b")
        self.assertRejected("a", "b")  # the earlier cut stays
        self.assertEqual(len(self.net.faults()), 6)

    def test_node_objects_stand_for_their_names(self):
        a, b = types.SimpleNamespace(name="a"), types.SimpleNamespace(name="b")
        self.net.partition([a], [b, "c"], mode="reject")
        self.assertRejected("b", "a")
        self.net.heal()
        self.net.cut(a, b, both_ways=False)
        self.assertEqual([(f["from"], f["to"]) for f in self.net.faults()], [("a", "b")])


class OneWayCutTests(ProxyTestCase):
    """cut("a", "b", both_ways=False) cuts the link a→b only.

    New connections between a and b fail both ways (a TCP handshake needs
    both directions). On connections made before the cut, bytes flowing b→a
    still arrive, bytes flowing a→b do not.
    """

    def test_one_way_drop(self):
        a_to_b = self.connect("a", "b")   # a's requests travel a→b, answers b→a
        b_to_a = self.connect("b", "a")   # b's requests travel b→a, answers a→b
        self.assertWorks(a_to_b)
        self.assertWorks(b_to_a)
        self.assertEqual(self.servers["b"].got(1.0), b"hello")
        self.assertEqual(self.servers["a"].got(1.0), b"hello")
        self.net.cut("a", "b", both_ways=False)

        self.assertDropped(self.connect("a", "b"))
        self.assertDropped(self.connect("b", "a"))

        self.assertDropped(a_to_b)
        self.assertIsNone(self.servers["b"].got(0.1), "a's request must not reach b")
        self.servers["b"].conns[0].sendall(b"pushed")  # b→a flows: b's push reaches a
        a_to_b.settimeout(1.0)
        self.assertEqual(recv_exactly(a_to_b, 6), b"pushed")

        self.assertDropped(b_to_a)  # the answer a→b is lost ...
        self.assertEqual(self.servers["a"].got(1.0), b"anyone?")  # ... the request arrived
        self.assertWorks(self.connect("a", "c"))
        self.assertEqual(self.net.faults(), [{"kind": "cut", "from": "a", "to": "b",
                                              "mode": "drop"}])

    def test_one_way_reject(self):
        a_to_b = self.connect("a", "b")
        b_to_a = self.connect("b", "a")
        self.assertWorks(a_to_b)
        self.net.cut("a", "b", both_ways=False, mode="reject")
        self.assertBroken(a_to_b)
        self.assertBroken(b_to_a)
        self.assertRejected("a", "b")
        self.assertRejected("b", "a")
        self.assertWorks(self.connect("c", "a"))


class DelayTests(ProxyTestCase):
    """Delays are checked against their lower bounds, which hold on any machine;
    "not delayed" means faster than the delay itself, and an upper bound is the
    delay plus a margin scaled from undelayed round trips measured in the same
    test, so a loaded machine slows both sides alike."""

    DELAY = 0.4

    def baseline(self, sock: socket.socket) -> float:
        """The slowest of five undelayed round trips on ``sock``."""
        return max(round_trip(sock) for _ in range(5))

    def assertDelayed(self, seconds: float, delay: float, base: float) -> None:
        self.assertGreaterEqual(seconds, delay - 0.005)
        self.assertLess(seconds, delay + 10 * base + 0.2)

    def test_delay_slows_one_direction_only(self):
        a_to_b, a_to_c = self.connect("a", "b"), self.connect("a", "c")
        b_to_a = self.connect("b", "a")
        base = max(self.baseline(sock) for sock in (a_to_b, a_to_c, b_to_a))
        for server in self.servers.values():
            server.drain()
        self.net.delay("a", "b", self.DELAY)

        sent = time.monotonic()
        a_to_b.sendall(b"one way")
        arrived, _data = self.servers["b"].received.get(timeout=5)
        self.assertDelayed(arrived - sent, self.DELAY, base)     # a→b: delayed
        self.assertEqual(recv_exactly(a_to_b, 7), b"one way")
        self.assertLess(round_trip(a_to_c), self.DELAY)          # a→c: not delayed

        sent = time.monotonic()
        b_to_a.sendall(b"request")
        arrived, _data = self.servers["a"].received.get(timeout=5)
        self.assertLess(arrived - sent, self.DELAY)              # b→a: not delayed
        recv_exactly(b_to_a, 7)
        self.assertDelayed(time.monotonic() - sent, self.DELAY, base)  # the answer a→b is

        self.assertDelayed(round_trip(a_to_b), self.DELAY, base)
        self.net.delay("a", "b", 0)
        self.assertLess(round_trip(a_to_b), self.DELAY)
        self.assertEqual(self.net.faults(), [])

    def test_jitter_stays_within_its_bounds_and_keeps_the_order(self):
        sock = self.connect("a", "b")
        base = self.baseline(sock)
        self.net.delay("a", "b", 0.2, jitter=0.1)
        times = [round_trip(sock) for _ in range(10)]
        self.assertGreaterEqual(min(times), 0.1 - 0.005)
        self.assertLess(max(times), 0.3 + 10 * base + 0.2)
        self.assertGreater(max(times) - min(times), 0.005, f"no jitter in {times}")

        messages = [b"%04d;" % i for i in range(300)]
        for message in messages:  # many chunks, each with its own random delay
            sock.sendall(message)
        sock.settimeout(10)
        self.assertEqual(recv_exactly(sock, 5 * len(messages)), b"".join(messages))

    def test_heal_releases_delayed_bytes_at_once(self):
        sock = self.connect("a", "b")
        self.net.delay("a", "b", 30)
        started = time.monotonic()
        sock.sendall(b"late")
        time.sleep(0.05)
        self.net.heal()
        sock.settimeout(2)
        self.assertEqual(recv_exactly(sock, 4), b"late")
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertWorks(sock)  # delayed, never cut: the connection stays


class StateAndErrorTests(FaultStateCases, ProxyTestCase):
    """The shared fault-state cases (tests/fault_cases.py), and what is the proxy's own."""

    def test_faults_before_any_route_need_no_thread(self):
        before = proxy_threads()
        with ProxyNetwork() as net:
            net.add_node("x")
            net.add_node(types.SimpleNamespace(name="y"))
            net.cut("x", "y")
            self.assertEqual(len(net.faults()), 2)
            self.assertEqual(proxy_threads(), before)


class TrafficUnderFaultsTests(ProxyTestCase):

    def test_random_faults_during_traffic_never_corrupt_a_stream(self):
        """Connections may fail while faults come and go, but what arrives is
        always exactly what was sent, and the proxy keeps working."""
        stop = threading.Event()
        outcomes = {"ok": 0, "failed": 0, "corrupt": 0}
        lock = threading.Lock()

        def client(seed: int) -> None:
            rnd = random.Random(seed)
            while not stop.is_set():
                observer, peer = rnd.sample(NODES, 2)
                outcome = "ok"
                try:
                    with socket.create_connection(self.net.routes_for(observer)[peer]["echo"],
                                                  timeout=0.2) as sock:
                        for _ in range(rnd.randint(1, 5)):
                            data = os.urandom(rnd.choice([1, 500, 100_000]))
                            sock.sendall(data)
                            if recv_exactly(sock, len(data)) != data:
                                outcome = "corrupt"
                except (OSError, EOFError):
                    outcome = "failed"
                with lock:
                    outcomes[outcome] += 1

        clients = [threading.Thread(target=client, args=(seed,)) for seed in range(6)]
        for thread in clients:
            thread.start()
        rnd = random.Random(0)
        deadline = time.monotonic() + 1.5
        try:
            while time.monotonic() < deadline:
                mode = rnd.choice(["drop", "reject"])
                a, b = rnd.sample(NODES, 2)
                rnd.choice([lambda: self.net.partition([a], mode=mode),
                            lambda: self.net.cut(a, b, both_ways=rnd.random() < 0.5, mode=mode),
                            lambda: self.net.isolate(a, mode=mode),
                            lambda: self.net.delay(a, b, 0.01, jitter=0.01),
                            self.net.heal])()
                time.sleep(rnd.random() * 0.05)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        self.assertEqual(outcomes["corrupt"], 0, outcomes)
        self.assertGreater(outcomes["ok"], 0, outcomes)
        self.assertGreater(outcomes["failed"], 0, outcomes)
        self.net.heal()
        self.assertWorks(self.connect("a", "b"))


SELECTOR_FALLBACK = r"""
import select, socket, time
del select.epoll  # as on macOS and the BSDs: the platform's selector is used
from disttest.clusters import proxy, proxy_streams
from tests.test_proxy import EchoServer, round_trip
assert proxy_streams.READ == 1 and proxy_streams.WRITE == 2, (proxy_streams.READ, proxy_streams.WRITE)
server = EchoServer()
with proxy.ProxyNetwork() as net:
    address = net.add_route("a", "b", "echo", server.address)
    with socket.create_connection(address, timeout=2) as sock:
        assert round_trip(sock, b"x" * 300_000) < 2
        net.delay("a", "b", 0.1)
        assert 0.09 < round_trip(sock) < 0.5
        net.cut("a", "b", mode="reject")
        try:
            sock.sendall(b"?")
            assert not sock.recv(10)
        except ConnectionError:
            pass
server.close()
print("ok")
"""


class SelectorFallbackTests(unittest.TestCase):

    def test_without_epoll_the_platform_selector_does_the_same(self):
        result = run_python(SELECTOR_FALLBACK, timeout=30)
        self.assertEqual(result.stdout.strip(), "ok", result.stderr)


class CloseTests(ProxyTestCase):

    def test_close_leaves_no_thread_and_no_socket(self):
        me = psutil.Process()
        self.net.close()  # the one of setUp: start from a process without a network
        threads_before, fds_before = threading.active_count(), me.num_fds()

        net = ProxyNetwork()
        net.add_route("a", "b", "echo", self.servers["b"].address)
        net.add_route("b", "a", "echo", self.servers["a"].address)
        net.add_route("a", "c", "echo", self.servers["c"].address)
        net.delay("a", "c", 5)
        net.cut("a", "b", mode="drop")
        ports = {address[1] for observer in ("a", "b")
                 for peers in net.routes_for(observer).values() for address in peers.values()}
        clients = []
        for observer, peer in (("a", "b"), ("b", "a"), ("a", "c")):
            sock = socket.create_connection(net.routes_for(observer)[peer]["echo"], timeout=2)
            clients.append(sock)
        clients[2].sendall(b"in flight")  # delayed, still queued in the proxy
        time.sleep(0.1)
        self.assertEqual(proxy_threads(), 1)

        net.close()
        net.close()  # idempotent
        for sock in clients:
            sock.close()
        self.assertEqual(proxy_threads(), 0)
        ours = [c for c in me.net_connections("tcp")
                if c.laddr and c.laddr[1] in ports or c.raddr and c.raddr[1] in ports]
        self.assertEqual(ours, [])
        # The servers' handler threads end once the proxy's upstream sockets are gone.
        self.assertTrue(wait_for(lambda: threading.active_count() == threads_before, 3),
                        f"{threading.active_count()} threads, {threads_before} before")
        self.assertTrue(wait_for(lambda: me.num_fds() == fds_before, 3),
                        f"{me.num_fds()} descriptors, {fds_before} before")

    def test_a_closed_network_says_so(self):
        self.net.close()
        with self.assertRaisesRegex(NetworkModeError, "closed"):
            self.net.partition(["a"])
        with self.assertRaisesRegex(NetworkModeError, "closed"):
            self.net.add_route("a", "b", "other", self.servers["b"].address)
        self.assertEqual(self.net.faults(), [])


if __name__ == "__main__":
    unittest.main()
