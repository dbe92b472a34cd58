"""Cluster classes run by several ``python -m disttest`` processes at once.

Every class starts a service on each node's app port and checks that each
peer answers with this run's cluster id; the ports each class held, and
when, go to ``$SAMPLE_PORTS_LOG`` so the test can look for overlaps.
"""
import json
import os
import time

import disttest
from tests.nodefuncs import ask_peers, serve


class Service(disttest.DistributedTestCase):
    cluster_size = 3

    @classmethod
    def setUpCluster(cls):
        cls.ports = cls.cluster.call_all(serve)
        cls.since = time.time()

    @classmethod
    def tearDownCluster(cls):
        path = os.environ.get("SAMPLE_PORTS_LOG")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"class": cls.__name__, "cluster": cls.cluster.id,
                                    "ports": cls.ports, "since": cls.since,
                                    "until": time.time(), "pid": os.getpid()}) + "\n")

    def check_peers(self):
        for node in self.nodes:
            expected = {other.name: f"{self.cluster.id} {other.name}"
                        for other in self.nodes if other is not node}
            self.assertEqual(node.call(ask_peers), expected)

    def test_peers_answer(self):
        self.check_peers()
        time.sleep(0.3)  # hold the ports while the other runs start theirs
        self.check_peers()


class ServiceAgain(Service):
    """Same requirement: the reset cluster, its ports free again."""


class ServiceBigger(Service):
    cluster_size = 4  # grows the cluster
