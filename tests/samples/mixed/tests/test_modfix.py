"""A module with setUpModule/tearDownModule and cluster classes of two sizes.

Its fixtures must run once, as under unittest, although its classes want
clusters of different sizes: the planner keeps the module whole.
"""
import unittest

import disttest
from tests.nodefuncs import node_name
from tests.record import mark, record


def setUpModule():
    mark("setUpModule")
    unittest.addModuleCleanup(mark, "moduleCleanup")


def tearDownModule():
    mark("tearDownModule")


class ModPlain(unittest.TestCase):

    def test_modplain(self):
        mark("test_modplain")
        record(self)


class ModSmall(disttest.DistributedTestCase):
    cluster_size = 2

    @classmethod
    def setUpClass(cls):
        mark("setUpClass ModSmall")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        mark("tearDownClass ModSmall")

    def test_modsmall(self):
        mark("test_modsmall")
        record(self, names=self.cluster.call_all(node_name))


class ModBig(disttest.DistributedTestCase):
    cluster_size = 3

    def test_modbig(self):
        mark("test_modbig")
        record(self, names=self.cluster.call_all(node_name))


class ModTail(unittest.TestCase):
    """Plain, and loaded after a cluster class: the module still sets up once."""

    def test_modtail(self):
        mark("test_modtail")
        record(self)
