"""The load_tests protocol: this module decides what it contributes."""
import unittest


class Kept(unittest.TestCase):

    def test_kept(self):
        pass

    def test_kept_too(self):
        pass


class Dropped(unittest.TestCase):

    def test_dropped(self):
        raise AssertionError("load_tests should have left this out")


def _function_test():
    pass


def load_tests(loader, standard_tests, pattern):
    suite = unittest.TestSuite()
    suite.addTests(loader.loadTestsFromTestCase(Kept))
    suite.addTest(unittest.FunctionTestCase(_function_test,
                                            description="a function test from load_tests"))
    return suite
