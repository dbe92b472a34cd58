import disttest

import store


class StoreTest(disttest.DistributedTestCase):
    cluster_size = 2

    def test_call(self):
        self.assertEqual(self.nodes[0].call(store.on_node, 3), 7)

    def test_kill(self):
        node = self.nodes[1]
        node.call(store.before_kill)
        node.kill()
        node.restart()

    def test_terminate(self):
        node = self.nodes[0]
        node.call(store.before_terminate)
        node.terminate()
        node.restart()

    def test_pause_then_kill(self):
        node = self.nodes[1]
        node.call(store.before_pause)
        node.pause()
        node.kill()
        node.restart()

    def test_spawn(self):
        self.nodes[0].spawn(store.spawned_forever)
        self.wait_until(lambda: self.nodes[0].call(_rounds) >= 2, timeout=10)


def _rounds():
    from disttest import this_node

    return this_node.state.get("rounds", 0)
