"""The fault bookkeeping every network mode shares (disttest/clusters/faults.py):
what ``faults()`` and ``history()`` say, and which wrong arguments are refused
with which error. Mixed into the mode's own test case (tests/test_proxy.py,
tests/netns_cases.py), whose ``net`` is a network of nodes "a", "b" and "c".
"""
from __future__ import annotations

import pickle
import time

from disttest.clusters.faults import NetworkFaultError
from disttest.errors import DisttestError, NetworkModeError


class FaultStateCases:
    """Tests of a network's fault state; not a TestCase of its own (a mixin)."""

    def assertHealed(self) -> None:
        """What a heal must leave of the mode's own machinery (a mode may check more)."""

    def test_faults_and_history(self):
        start = len(self.net.history())  # a network shared by a class has earlier entries
        self.net.partition(["a"], ["b", "c"], mode="reject")
        self.net.delay("b", "c", 0.5, jitter=0.1)
        self.assertEqual(self.net.faults(), [
            {"kind": "cut", "from": "a", "to": "b", "mode": "reject"},
            {"kind": "cut", "from": "a", "to": "c", "mode": "reject"},
            {"kind": "cut", "from": "b", "to": "a", "mode": "reject"},
            {"kind": "cut", "from": "c", "to": "a", "mode": "reject"},
            {"kind": "delay", "from": "b", "to": "c", "seconds": 0.5, "jitter": 0.1},
        ])
        self.net.cut("b", "c", both_ways=False)
        self.net.isolate("a")
        self.net.heal()
        self.assertEqual(self.net.faults(), [])
        self.assertHealed()
        history = self.net.history()[start:]
        self.assertEqual([h["kind"] for h in history],
                         ["partition", "delay", "cut", "isolate", "heal"])
        self.assertEqual(history[0]["groups"], [["a"], ["b", "c"]])
        self.assertEqual(history[2], dict(history[2], **{"from": "b", "to": "c",
                                                          "both_ways": False, "mode": "drop"}))
        times = [h["time"] for h in history]
        self.assertEqual(times, sorted(times))
        self.assertLessEqual(times[-1], time.monotonic())

    def test_a_bad_mode_names_the_allowed_modes(self):
        length = len(self.net.history())
        for call in (lambda: self.net.partition(["a"], mode="block"),
                     lambda: self.net.isolate("a", mode="DROP"),
                     lambda: self.net.cut("a", "b", mode=None)):
            with self.assertRaises(NetworkFaultError) as caught:
                call()
            error = caught.exception
            self.assertIsInstance(error, NetworkModeError)
            self.assertIsInstance(error, ValueError)
            self.assertIsInstance(error, DisttestError)
            self.assertIn("'drop'", str(error))
            self.assertIn("'reject'", str(error))
        self.assertEqual(self.net.faults(), [])
        self.assertEqual(len(self.net.history()), length)

    def test_an_unknown_node_names_the_known_ones(self):
        length = len(self.net.history())
        for call in (lambda: self.net.partition(["a"], ["zz"]),
                     lambda: self.net.isolate("zz"),
                     lambda: self.net.cut("a", "zz"),
                     lambda: self.net.delay("zz", "a", 1)):
            with self.assertRaises(NetworkFaultError) as caught:
                call()
            self.assertIn("'zz'", str(caught.exception))
            self.assertIn("a, b, c", str(caught.exception))
        copy = pickle.loads(pickle.dumps(caught.exception))
        self.assertIs(type(copy), NetworkFaultError)
        self.assertEqual(copy.diagnosis, caught.exception.diagnosis)
        self.assertEqual(copy.node, "zz")
        self.assertEqual(self.net.faults(), [])
        self.assertEqual(len(self.net.history()), length)

    def test_other_wrong_arguments(self):
        length = len(self.net.history())
        with self.assertRaisesRegex(NetworkFaultError, "in two groups"):
            self.net.partition(["a", "b"], ["b"])
        with self.assertRaisesRegex(NetworkFaultError, "named twice"):
            self.net.cut("a", "a")
        with self.assertRaisesRegex(NetworkFaultError, "jitter between 0 and seconds"):
            self.net.delay("a", "b", 0.1, jitter=0.2)
        with self.assertRaisesRegex(NetworkFaultError, "seconds must be"):
            self.net.delay("a", "b", -1)
        self.assertEqual(self.net.faults(), [])
        self.assertEqual(len(self.net.history()), length)
