"""Network modes through the pool: what a test class sees of proxy clusters.

The proxy itself is tested in test_proxy.py (and namespaces in test_netns.py);
here: nodes dial peers through their proxies, faults reach real node traffic,
are healed before the next user, proxies are gone when the cluster stops, and
a direct cluster says how to get faults.
"""
import threading
import unittest

from disttest.clusters.ports import port_is_free
from disttest.errors import NetworkModeError
from disttest.requirements import Requirement
from tests import support
from tests.fixtures import nodefuncs


def serve_and_dial():
    """On a node: an echo server on its app port; dial every peer through peers()."""
    import socket

    from disttest import this_node

    server = socket.create_server((this_node.host, this_node.port("app")))
    server.settimeout(0.1)

    def loop():
        while not this_node.stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                data = conn.recv(64)
                if data:
                    conn.sendall(data)
        server.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    this_node.on_reset(thread.join)
    return this_node.peers("app")


def reach(peer_name, timeout=0.5):
    """On a node: does an echo through this node's address for ``peer_name`` come back?"""
    import socket

    from disttest import this_node

    address = this_node.peers("app")[peer_name]
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"ping")
            return sock.recv(64) == b"ping"
    except OSError:
        return False


def hold_connection(address=None, peer=None):
    """On a node: keep a connection open (until reset) to ``address``, or to ``peer``
    through this node's peer map."""
    import socket

    from disttest import this_node

    target = tuple(address) if address else this_node.peers("app")[peer]
    sock = socket.create_connection(target, timeout=2)
    this_node.on_reset(sock.close)


class ProxyClusterTest(unittest.TestCase):
    def setUp(self):
        self.pool = support.make_pool()
        self.addCleanup(self.pool.shutdown)

    def acquire(self, size=3):
        cluster = self.pool.acquire(Requirement(size=size, network="proxy"))
        peers = cluster.call_all(serve_and_dial)
        return cluster, peers

    def test_peers_are_proxies_not_the_nodes_themselves(self):
        cluster, peers = self.acquire()
        real = {node.name: node.address("app") for node in cluster}
        for node, seen in zip(cluster, peers):
            self.assertEqual(set(seen), set(real) - {node.name})
            for peer, address in seen.items():
                self.assertNotEqual(tuple(address), real[peer])
        self.assertTrue(cluster[0].call(reach, "node-1"))

    def test_partition_cuts_node_traffic_and_heal_restores_it(self):
        cluster, _ = self.acquire()
        cluster.partition([cluster[0]], [cluster[1], cluster[2]], mode="reject")
        self.assertFalse(cluster[0].call(reach, "node-1"))
        self.assertTrue(cluster[1].call(reach, "node-2"))
        cluster.heal()
        self.assertTrue(cluster[0].call(reach, "node-1"))
        self.assertEqual(cluster.faults(), [])

    def test_faults_are_healed_before_the_next_user(self):
        cluster, _ = self.acquire()
        cluster.isolate(cluster[0], mode="reject")
        self.assertTrue(cluster.faults())
        self.pool.release(cluster)
        again, _ = self.acquire()
        self.assertEqual(again.id, cluster.id)  # the same cluster, reset
        self.assertEqual(again.faults(), [])
        self.assertTrue(again[0].call(reach, "node-1"))

    def test_a_node_that_bypasses_the_proxy_is_named_in_a_warning(self):
        warnings = []
        self.pool.events.subscribe(
            lambda e: warnings.append(e.message) if e.kind == "warning" else None)
        cluster, _ = self.acquire()
        a, b, c = cluster
        c.call(hold_connection, peer="node-1")  # through the proxy: nothing to say
        cluster.partition([a], [b, c])
        self.assertEqual([w for w in warnings if "straight" in w], [])
        cluster.heal()
        a.call(hold_connection, address=b.address("app"))  # the real port: bypassed
        cluster.partition([a], [b, c])
        cluster.isolate(a)  # the same connection is named once
        found = [w for w in warnings if "straight" in w]
        self.assertEqual(len(found), 1, warnings)
        self.assertIn(f"node-0 connected straight to node-1's port 'app' ({b.port('app')})",
                      found[0])
        self.assertIn("node-1 accepted it", found[0])
        self.assertIn('network = "auto"', found[0])

    def test_proxies_are_gone_when_the_cluster_stops(self):
        before = {t.ident for t in threading.enumerate()}
        cluster, peers = self.acquire(2)
        network = cluster._entry.faults
        cluster.stop()
        self.assertTrue(network._closed)
        proxy_ports = [address[1] for seen in peers for address in seen.values()]
        self.assertTrue(support.wait_for(lambda: all(
            port_is_free("127.0.0.1", p) for p in proxy_ports)))
        self.assertTrue(support.wait_for(
            lambda: {t.ident for t in threading.enumerate()} <= before))

    def test_a_direct_cluster_says_how_to_get_faults(self):
        cluster = self.pool.acquire(Requirement(size=2))
        for call in (lambda: cluster.partition([cluster[0]]), cluster.heal,
                     lambda: cluster.delay(cluster[0], cluster[1], 0.1)):
            with self.assertRaises(NetworkModeError) as caught:
                call()
            self.assertIn('network = "proxy"', str(caught.exception))
        self.assertEqual(cluster[0].call(nodefuncs.add, 1, 2), 3)

    def test_proxy_and_direct_classes_never_share_a_cluster(self):
        direct = self.pool.acquire(Requirement(size=2))
        self.pool.release(direct)
        proxied = self.pool.acquire(Requirement(size=2, network="proxy"))
        self.assertNotEqual(proxied.id, direct.id)


def tearDownModule():
    support.shutdown_and_check()


if __name__ == "__main__":
    unittest.main()
