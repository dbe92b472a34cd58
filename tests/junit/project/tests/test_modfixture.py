"""A module whose setUpModule fails: its tests never run."""
import unittest


def setUpModule():
    raise OSError("setUpModule failed on purpose")


class InBrokenModule(unittest.TestCase):

    def test_never_runs(self):
        raise AssertionError("ran despite a failed setUpModule")
