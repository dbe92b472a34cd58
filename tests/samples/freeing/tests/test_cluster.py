"""A cluster class after plain ones: the runner reorders, and must still free
each test when it ends."""
import gc
import unittest
import weakref

import disttest

from tests import test_plain

SEEN = []


def _heavy(self):
    self.payload = bytearray(256 * 1024)
    SEEN.append(weakref.ref(self))


class HeavyCluster(disttest.DistributedTestCase):
    cluster_size = 1

    def test_zz_every_earlier_test_was_freed(self):
        gc.collect()
        alive = [ref().id() for ref in SEEN + test_plain.SEEN if ref() is not None]
        self.assertEqual(alive, [], f"{len(alive)} finished test(s) still referenced")


for _n in range(20):
    setattr(HeavyCluster, f"test_{_n:03d}", _heavy)


class PlainAfterwards(unittest.TestCase):
    def test_plain(self):
        pass
