"""Faults on systems whose nodes know each other by address, with network = "auto"."""
import os

import disttest

import addressed

NETWORK = os.environ.get("SAMPLE_NETWORK", "auto")


class RaftTest(disttest.DistributedTestCase):
    cluster_size = 3
    network = NETWORK

    @classmethod
    def setUpCluster(cls):
        cls.cluster.call_all(addressed.start_raft)

    def setUp(self):
        self.addCleanup(self.cluster.heal)

    def statuses(self, nodes=None):
        return [n.call(addressed.raft_status) for n in (nodes or self.nodes)]

    def agreed_leader(self, nodes=None):
        """The leader every node of ``nodes`` follows, when it has a quorum; else None."""
        seen = self.statuses(nodes)
        leaders = {s["leader"] for s in seen}
        if len(leaders) != 1 or None in leaders:
            return None
        address = leaders.pop()
        leader = next((s for s in seen if s["me"] == address), None)
        return leader if leader and leader["quorum"] else None

    def node_at(self, address):
        return next(n for n in self.nodes if f"{n.host}:{n.port()}" == address)

    def test_a_leader_is_elected_by_address(self):
        leader = self.wait_until(self.agreed_leader, timeout=10, message="no agreed leader")
        self.assertIn(leader["me"], {f"{n.host}:{n.port()}" for n in self.nodes})
        self.assertEqual(len({n.host for n in self.nodes}), 3)  # every node its own address

    def test_partition_loses_and_heal_regains_quorum(self):
        old = self.wait_until(self.agreed_leader, timeout=10, message="no agreed leader")
        alone = self.node_at(old["me"])
        others = [n for n in self.nodes if n is not alone]
        self.cluster.partition([alone], others)
        new = self.wait_until(lambda: self.agreed_leader(others), timeout=10,
                              message="the majority elected no leader")
        self.assertGreater(new["term"], old["term"])
        self.wait_until(lambda: not alone.call(addressed.raft_status)["quorum"], timeout=5,
                        message="the cut-off leader kept its quorum")
        self.cluster.heal()
        healed = self.wait_until(self.agreed_leader, timeout=10,
                                 message="no agreed leader after heal()")
        self.assertGreaterEqual(healed["term"], new["term"])

    def test_isolate_and_heal(self):
        leader = self.wait_until(self.agreed_leader, timeout=10, message="no agreed leader")
        follower = next(n for n in self.nodes if f"{n.host}:{n.port()}" != leader["me"])
        self.cluster.isolate(follower, mode="reject")
        rest = [n for n in self.nodes if n is not follower]
        self.wait_until(lambda: self.agreed_leader(rest), timeout=10,
                        message="two nodes of three lost their quorum")
        self.wait_until(lambda: follower.call(addressed.raft_status)["state"] != "follower",
                        timeout=5, message="the isolated node still follows")
        self.cluster.heal()
        self.wait_until(self.agreed_leader, timeout=10, message="no agreed leader after heal()")

    def test_delay_slows_replication(self):
        leader = self.node_at(self.wait_until(self.agreed_leader, timeout=10)["me"])
        baseline = leader.call(addressed.raft_replicate, "before")
        for other in self.nodes:
            if other is not leader:
                self.cluster.delay(leader, other, 0.15, jitter=0.02)
        slowed = leader.call(addressed.raft_replicate, "during")
        self.assertGreaterEqual(slowed, 0.13)
        self.assertGreater(slowed, baseline)
        self.cluster.heal()


class ClientServerTest(disttest.DistributedTestCase):
    cluster_size = 3
    network = NETWORK

    @classmethod
    def setUpCluster(cls):
        cls.nodes[0].call(addressed.start_server)

    def setUp(self):
        self.addCleanup(self.cluster.heal)

    def test_the_server_knows_clients_by_their_own_address(self):
        server, one, two = self.nodes
        self.assertEqual(one.call(addressed.client_put, server.name, "k", "1")[0], one.host)
        self.assertEqual(two.call(addressed.client_put, server.name, "k", "2")[0], two.host)
        self.assertEqual(server.call(addressed.server_clients), sorted([one.host, two.host]))

    def test_partition_isolate_heal(self):
        server, one, two = self.nodes
        for client in (one, two):
            self.assertEqual(client.call(addressed.client_put, server.name, "a", "b")[0],
                             client.host)
        self.cluster.isolate(one)
        self.assertNotEqual(one.call(addressed.client_put, server.name, "a", "c", 0.5)[0],
                            one.host)
        self.assertEqual(two.call(addressed.client_put, server.name, "a", "d")[0], two.host)
        self.cluster.partition([server], [one, two])
        self.assertNotEqual(two.call(addressed.client_put, server.name, "a", "e", 0.5)[0],
                            two.host)
        self.cluster.heal()
        for client in (one, two):
            self.wait_until(
                lambda: client.call(addressed.client_put, server.name, "a", "f")[0]
                == client.host, timeout=10, message=f"{client.name} never got through again")

    def test_delay_slows_requests(self):
        server, one, _two = self.nodes
        _seen, baseline = one.call(addressed.client_put, server.name, "x", "1")
        self.cluster.delay(server, one, 0.3, jitter=0.05)
        seen, slowed = one.call(addressed.client_put, server.name, "x", "2", 5.0)
        self.assertEqual(seen, one.host)
        self.assertGreaterEqual(slowed, 0.25)
        self.assertGreater(slowed, baseline)

    def test_the_test_process_reaches_the_server(self):
        with self.nodes[0].connect("app", timeout=5) as conn:
            conn.sendall(b"from=test\n")
            self.assertTrue(conn.makefile().readline().strip())
