"""A run whose reporters fail: a subscriber that raises, and an event that
the console reporter cannot render."""
import unittest

import disttest
from disttest import session


def broken(event):
    raise RuntimeError("this reporter is broken")


class UsesACluster(disttest.DistributedTestCase):
    cluster_size = 1

    def test_a_broken_reporter_and_a_malformed_event(self):
        events = session.current().events
        events.subscribe(broken)
        events.emit("node_crashed")  # no node, pid or status: the console cannot say it
        self.assertEqual(self.cluster[0].call(abs, -2), 2)


class Plain(unittest.TestCase):
    def test_passes(self):
        pass
