"""Every unittest outcome, subtests and output, for the JUnit XML report."""
import sys
import unittest


class Outcomes(unittest.TestCase):

    def test_pass(self):
        pass

    def test_fail(self):
        print("stdout-of-test_fail")
        sys.stderr.write("stderr-of-test_fail\n")
        self.assertEqual(1, 2, "one is not two")

    def test_error(self):
        raise RuntimeError("boom in test_error")

    @unittest.skip("skipped on purpose")
    def test_skip(self):
        raise AssertionError("a skipped test ran")

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertTrue(False)

    @unittest.expectedFailure
    def test_unexpected_success(self):
        pass

    def test_control_chars(self):
        self.fail("bell\x07 escape\x1b[31m nul\x00 end")


class Subtests(unittest.TestCase):

    def test_odd_subtests_fail(self):
        for i in range(4):
            with self.subTest(i=i):
                print(f"subtest-stdout-{i}")
                self.assertEqual(i % 2, 0, f"odd {i}")

    def test_subtest_error_then_own_failure(self):
        with self.subTest("lookup"):
            {}["missing"]
        self.fail("own failure after the subtests")

    def test_subtest_skipped(self):
        with self.subTest(i=0):
            self.skipTest("not this one")

    def test_subtests_pass(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 3)


class BrokenSetUpClass(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        raise ValueError("setUpClass failed on purpose")

    def test_never_runs(self):
        raise AssertionError("ran despite a failed setUpClass")
