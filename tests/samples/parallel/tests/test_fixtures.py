"""Plain classes under module and class fixtures, each to run exactly once."""
import unittest

from tests.mark import mark, nap


def setUpModule():
    mark("fixture", "setUpModule")


def tearDownModule():
    mark("fixture", "tearDownModule")


class First(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        mark("fixture", "setUpClass-First")

    @classmethod
    def tearDownClass(cls):
        mark("fixture", "tearDownClass-First")

    def test_one(self):
        mark("test", self.id())
        nap()

    def test_two(self):
        mark("test", self.id())
        nap()


class Second(unittest.TestCase):
    def test_one(self):
        mark("test", self.id())
        nap()
