"""One class with a bad declaration among good ones."""
import unittest

import disttest


class BadSize(disttest.DistributedTestCase):
    cluster_size = 0

    def test_never(self):
        raise AssertionError("ran with cluster_size = 0")


class GoodCluster(disttest.DistributedTestCase):
    cluster_size = 2

    def test_good(self):
        self.assertEqual(len(self.nodes), 2)


class GoodPlain(unittest.TestCase):

    def test_plain(self):
        pass
