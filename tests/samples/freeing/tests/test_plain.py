"""Plain tests that each keep a buffer on ``self``; the last checks that every
earlier test was freed when it ended, as unittest's TestSuite does."""
import gc
import unittest
import weakref

SEEN = []


def _heavy(self):
    self.payload = bytearray(256 * 1024)
    SEEN.append(weakref.ref(self))


class Heavy(unittest.TestCase):
    def test_zz_every_earlier_test_was_freed(self):
        gc.collect()
        alive = [ref().id() for ref in SEEN if ref() is not None]
        self.assertEqual(alive, [], f"{len(alive)} finished test(s) still referenced")


for _n in range(40):
    setattr(Heavy, f"test_{_n:03d}", _heavy)
