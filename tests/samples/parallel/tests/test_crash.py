"""With ``$SAMPLE_CRASH`` set, the second test kills the process running it
(under ``-j``: its worker) with SIGKILL; the third must still run elsewhere."""
import os
import signal

import disttest
from tests.mark import mark


class Crashy(disttest.DistributedTestCase):
    cluster_size = 1
    node_env = {"SAMPLE_GROUP": "crashy"}

    def test_1_before(self):
        mark("test", self.id(), self.cluster)

    def test_2_dies(self):
        mark("test", self.id(), self.cluster)
        if os.environ.get("SAMPLE_CRASH"):
            mark("nodes", " ".join(str(n.pid) for n in self.nodes))
            os.kill(os.getpid(), signal.SIGKILL)

    def test_3_after(self):
        mark("test", self.id(), self.cluster)
