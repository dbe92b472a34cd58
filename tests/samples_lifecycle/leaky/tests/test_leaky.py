"""A node starts a child process that nothing stops: it outlives the node."""
import os
import subprocess

import disttest


def start_sleeper():
    # Same session as the node, not registered with this_node.on_reset.
    return subprocess.Popen(["sleep", "60"], start_new_session=False).pid


class Leaky(disttest.DistributedTestCase):
    cluster_size = 1

    def test_leaves_a_child_behind(self):
        pid = self.nodes[0].call(start_sleeper)
        path = os.environ.get("SAMPLE_MARKERS")
        if path:
            with open(path, "a") as f:
                f.write(f"child {pid}\n")
