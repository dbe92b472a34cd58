"""A test file run as a script: ``python tests/test_main.py -v``.

Its node function lives in this file, so on the nodes it is a function of
the controller's ``__main__``. ``$SAMPLE_USE_UNITTEST=1`` runs it with
``unittest.main()`` instead, to compare.
"""
import os
import unittest

import disttest
from disttest import this_node


def node_name():
    return this_node.name


class Plain(unittest.TestCase):

    def test_plain_pass(self):
        pass

    @unittest.skip("skipped in the script")
    def test_plain_skip(self):
        pass

    def test_plain_fail(self):
        self.assertEqual("a", "b")


class ScriptCluster(disttest.DistributedTestCase):
    cluster_size = 2

    def test_function_of_main_runs_on_nodes(self):
        self.assertEqual(self.cluster.call_all(node_name), ["node-0", "node-1"])


if __name__ == "__main__":
    if os.environ.get("SAMPLE_USE_UNITTEST") == "1":
        unittest.main()
    else:
        disttest.main()
