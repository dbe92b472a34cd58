import disttest


class NeedsACluster(disttest.DistributedTestCase):
    cluster_size = 1

    def test_uses_the_cluster(self):
        self.assertEqual(self.cluster[0].call(abs, -1), 1)
