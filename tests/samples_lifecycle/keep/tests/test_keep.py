"""One 2-node cluster class, run twice when its cluster is kept in between."""
import os

import disttest
from disttest import this_node


def _mark(text):
    path = os.environ.get("SAMPLE_MARKERS")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


def visit():
    """This node's pid and whether an earlier test left state on it."""
    dirty = bool(this_node.state)
    this_node.state["visited"] = True
    return os.getpid(), dirty


class Pair(disttest.DistributedTestCase):
    cluster_size = 2

    def test_nodes_answer_clean(self):
        answers = self.cluster.call_all(visit)
        pids = [pid for pid, _ in answers]
        _mark("pids " + " ".join(map(str, pids)))
        self.assertEqual(len(set(pids)), len(answers))
        self.assertEqual([dirty for _, dirty in answers], [False] * len(answers),
                         "a node was lent without being reset")
