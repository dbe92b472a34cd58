"""Cluster tests that print and fail, for ``-b`` (buffer) and ``-f`` (failfast)."""
import unittest

import disttest


class A(disttest.DistributedTestCase):
    cluster_size = 2

    def test_1_prints_and_fails(self):
        print("buffered-stdout-from-cluster-test")
        self.assertEqual(len(self.nodes), 3, "wrong node count on purpose")

    def test_2_passes(self):
        print("buffered-stdout-of-a-passing-test")


class B(disttest.DistributedTestCase):
    cluster_size = 3

    def test_3_passes(self):
        pass


class CPlain(unittest.TestCase):

    def test_4_plain(self):
        pass
