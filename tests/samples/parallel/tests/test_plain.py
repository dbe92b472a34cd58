"""Plain classes without fixtures: spread over the workers too."""
import unittest

from tests.mark import mark, nap


class PlainA(unittest.TestCase):
    def test_one(self):
        mark("test", self.id())
        nap()

    def test_two(self):
        mark("test", self.id())
        nap()


class PlainB(unittest.TestCase):
    def test_one(self):
        mark("test", self.id())
        nap()
