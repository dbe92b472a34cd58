"""Cluster classes whose clusters cannot start (the test sets a tiny
startup_timeout), between plain tests that must still run."""
import unittest

import disttest


class APlainBefore(unittest.TestCase):

    def test_plain_before(self):
        pass


class CannotStart(disttest.DistributedTestCase):
    cluster_size = 2

    def test_one(self):
        raise AssertionError("ran without a cluster")

    def test_two(self):
        raise AssertionError("ran without a cluster")


class CannotStartEither(disttest.DistributedTestCase):
    cluster_size = 2
    node_env = {"FAILSTART": "1"}  # another compatibility key: a second, separate attempt

    def test_three(self):
        raise AssertionError("ran without a cluster")


class ZPlainAfter(unittest.TestCase):

    def test_plain_after(self):
        pass
