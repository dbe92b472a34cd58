"""Every unittest outcome, fixtures at every level and cleanups (no clusters).

Fixtures append a line to the file named by ``$SAMPLE_MARKERS`` (when set), so
a test can check that each ran exactly once.
"""
import os
import sys
import unittest


def mark(text):
    path = os.environ.get("SAMPLE_MARKERS")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


def setUpModule():
    mark("setUpModule")
    unittest.addModuleCleanup(mark, "moduleCleanup")


def tearDownModule():
    mark("tearDownModule")


class Outcomes(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        mark("setUpClass")
        cls.addClassCleanup(mark, "classCleanup")

    @classmethod
    def tearDownClass(cls):
        mark("tearDownClass")

    def test_pass(self):
        self.addCleanup(mark, "cleanup test_pass")

    def test_fail(self):
        self.assertEqual(1, 2, "one is not two")

    def test_error(self):
        raise RuntimeError("boom in test_error")

    @unittest.skip("skipped on purpose")
    def test_skip_method(self):
        raise AssertionError("a skipped test ran")

    def test_skip_inside(self):
        self.skipTest("skipped from inside")

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertTrue(False)

    @unittest.expectedFailure
    def test_unexpected_success(self):
        pass

    def test_subtests(self):
        for i in range(4):
            with self.subTest(i=i):
                self.assertEqual(i % 2, 0, f"odd {i}")

    def test_prints_then_fails(self):
        print("captured-stdout-marker")
        sys.stderr.write("captured-stderr-marker\n")
        self.fail("failing after printing")

    def test_locals(self):
        secret_local = 12345
        self.assertEqual(secret_local, 0)

    def test_cleanup_fails(self):
        self.addCleanup(self._bad_cleanup)

    def _bad_cleanup(self):
        raise ValueError("cleanup failed")


@unittest.skip("whole class skipped")
class SkippedClass(unittest.TestCase):

    def test_a(self):
        raise AssertionError("a skipped class ran")

    def test_b(self):
        raise AssertionError("a skipped class ran")


class SetUpClassFails(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        raise RuntimeError("setUpClass broke")

    def test_never_runs(self):
        raise AssertionError("ran although setUpClass failed")
