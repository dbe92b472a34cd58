"""Plain unittest classes: they never need a cluster."""
import unittest

import disttest
from tests.nodefuncs import node_name
from tests.record import record


class PlainFirst(unittest.TestCase):

    def test_plainonly_one(self):
        record(self)

    @disttest.tag("smoke")
    def test_plainonly_smoke(self):
        record(self)


class PlainCurrentCluster(unittest.TestCase):

    def test_plainonly_current_cluster(self):
        try:
            cluster = disttest.current_cluster()
        except disttest.DisttestError:
            record(self, current=None)
        else:
            record(self, current=len(cluster.nodes), names=cluster.call_all(node_name))
