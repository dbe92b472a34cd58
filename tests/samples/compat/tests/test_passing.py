"""Tests that all pass, with names for -k."""
import unittest


class Alpha(unittest.TestCase):

    def test_alpha_one(self):
        pass

    def test_alpha_two(self):
        pass


class Beta(unittest.TestCase):

    def test_beta_one(self):
        pass

    @unittest.skip("beta skip")
    def test_beta_skipped(self):
        pass
