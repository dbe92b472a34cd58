"""The network-level tests of tests/netns_cases.py against network = "userns".

The same stand-ins, faults and assertions as for the machine's namespaces
(tests/test_netns.py), in a network made by an unprivileged user namespace's
hub. Run as an ordinary user: a suite running as root runs this module as
uid 65534 from tests/test_userns.py (and skips it when it meets it itself).
"""
from __future__ import annotations

import os
import unittest

from disttest.clusters import userns
from disttest.clusters.netns import NetnsNetwork
from disttest.clusters.userns import UserHost
from tests import netns_cases

if os.geteuid() == 0:
    raise unittest.SkipTest("as root this would not show what an ordinary user gets: "
                            "tests/test_userns.py runs this module as uid 65534")
WHY_NOT = userns.unavailable()
if WHY_NOT:
    raise unittest.SkipTest(f"unprivileged network namespaces cannot work here: {WHY_NOT}")


def _network() -> NetnsNetwork:
    return NetnsNetwork("tests", host=UserHost())


class AddressTests(netns_cases.AddressTests):
    make_network = staticmethod(_network)


class PartitionTests(netns_cases.PartitionTests):
    make_network = staticmethod(_network)


class OneWayCutTests(netns_cases.OneWayCutTests):
    make_network = staticmethod(_network)


class DelayTests(netns_cases.DelayTests):
    make_network = staticmethod(_network)


class StateAndErrorTests(netns_cases.StateAndErrorTests):
    make_network = staticmethod(_network)


if __name__ == "__main__":
    unittest.main()
