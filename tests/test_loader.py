"""Tags and selection: ``tags_of``, ``select`` (``--only``/``--exclude``) and the
stand-ins that report cluster tests as skipped."""
from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import textwrap
import unittest
import uuid
from pathlib import Path

import disttest
from disttest.loader import SkippedTest, select, tags_of


class Samples:
    """The classes under test, kept out of the module namespace so that no test
    loader collects them (a DistributedTestCase here would start clusters)."""

    class Plain(unittest.TestCase):

        def test_untagged(self):
            pass

        @disttest.tag("smoke", "fast")
        def test_tagged(self):
            pass

    @disttest.tag("nightly")
    class TaggedPlain(unittest.TestCase):

        def test_a(self):
            pass

    @disttest.tag("extra")
    class TaggedPlainChild(TaggedPlain):

        def test_b(self):
            pass

    class Clustered(disttest.DistributedTestCase):
        cluster_size = 2
        tags = {"replication"}

        def test_plain_method(self):
            pass

        @disttest.tag("slow")
        def test_method_tag(self):
            pass

    @disttest.tag("decorated")
    class ClusteredDecorated(disttest.DistributedTestCase):

        def test_a(self):
            pass

    @disttest.distributed(cluster_size=2, tags={"opted-in"})
    class OptedIn(unittest.TestCase):

        def test_a(self):
            pass


class TagsOf(unittest.TestCase):

    def test_plain_tests_have_only_their_declared_tags(self):
        self.assertEqual(tags_of(Samples.Plain("test_untagged")), frozenset())
        self.assertEqual(tags_of(Samples.Plain("test_tagged")), {"smoke", "fast"})

    def test_class_tags_apply_to_every_method_and_add_up_in_subclasses(self):
        self.assertEqual(tags_of(Samples.TaggedPlain("test_a")), {"nightly"})
        self.assertEqual(tags_of(Samples.TaggedPlainChild("test_b")), {"nightly", "extra"})
        self.assertEqual(tags_of(Samples.TaggedPlainChild("test_a")), {"nightly", "extra"})

    def test_cluster_tests_imply_distributed(self):
        self.assertEqual(tags_of(Samples.Clustered("test_plain_method")),
                         {"replication", "distributed"})
        self.assertEqual(tags_of(Samples.Clustered("test_method_tag")),
                         {"replication", "distributed", "slow"})
        self.assertEqual(tags_of(Samples.ClusteredDecorated("test_a")),
                         {"decorated", "distributed"})
        self.assertEqual(tags_of(Samples.OptedIn("test_a")), {"opted-in", "distributed"})

    def test_tag_names_are_checked(self):
        for bad in ("", None, 3):
            with self.subTest(bad=bad), self.assertRaises(disttest.DisttestError):
                disttest.tag(bad)


class ModulesUsingClustersByHand(unittest.TestCase):
    """A module whose source starts clusters itself is tagged "cluster" too."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="disttest-loader-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        sys.path.insert(0, str(self.dir))
        self.addCleanup(sys.path.remove, str(self.dir))

    def load(self, body: str) -> unittest.TestCase:
        name = f"_loader_sample_{uuid.uuid4().hex}"  # tags are cached by module name
        source = textwrap.dedent("""
            import unittest
            import disttest

            class Manual(unittest.TestCase):
                def test_a(self):
                    pass
        """) + textwrap.dedent(body)
        (self.dir / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        module = importlib.import_module(name)
        self.addCleanup(sys.modules.pop, name, None)
        return module.Manual("test_a")

    def test_helper_start_cluster_and_context_manager_are_recognised(self):
        for body in ("class Helper(disttest.ClusterTestHelper, unittest.TestCase):\n"
                     "    pass\n",
                     "def make():\n    return disttest.start_cluster(3)\n",
                     "def make():\n    with disttest.cluster (2) as c:\n        pass\n",
                     "from disttest import start_cluster\n"):
            with self.subTest(body=body):
                self.assertEqual(tags_of(self.load(body)), {"cluster", "distributed"})

    def test_other_mentions_of_clusters_are_not(self):
        body = ("SIZE = disttest.cluster_size(3)\n"
                "# a cluster of three, started elsewhere\n"
                "cluster = None\n")
        self.assertEqual(tags_of(self.load(body)), frozenset())

    def test_comments_and_strings_naming_the_helpers_are_not(self):
        body = ('"""Unlike ClusterTestHelper or start_cluster(3), this needs no cluster."""\n'
                "# disttest.cluster(3) would start one\n"
                "HOW = 'with disttest.cluster(2) as c: ...'\n")
        self.assertEqual(tags_of(self.load(body)), frozenset())

    def test_selection_treats_them_as_cluster_tests(self):
        manual = self.load("def make():\n    return disttest.start_cluster(2)\n")
        plain = Samples.Plain("test_untagged")
        self.assertEqual(select([manual, plain], ["distributed"], [])[0], [manual])
        self.assertEqual(select([manual, plain], [], ["cluster"])[0], [plain])


class Select(unittest.TestCase):

    def setUp(self):
        self.untagged = Samples.Plain("test_untagged")
        self.smoke = Samples.Plain("test_tagged")
        self.cluster = Samples.Clustered("test_plain_method")
        self.slow_cluster = Samples.Clustered("test_method_tag")
        self.tests = [self.untagged, self.smoke, self.cluster, self.slow_cluster]

    def test_no_filters_keep_everything_untouched(self):
        kept, removed = select(self.tests, [], [])
        self.assertIs(kept, self.tests)
        self.assertFalse(removed)

    def test_only(self):
        self.assertEqual(select(self.tests, ["distributed"], []),
                         ([self.cluster, self.slow_cluster], True))
        self.assertEqual(select(self.tests, ["smoke", "slow"], []),
                         ([self.smoke, self.slow_cluster], True))
        self.assertEqual(select(self.tests, ["nothing"], []), ([], True))

    def test_exclude(self):
        self.assertEqual(select(self.tests, [], ["distributed"]),
                         ([self.untagged, self.smoke], True))
        self.assertEqual(select(self.tests, [], ["nothing"]), (self.tests, False))

    def test_exclude_wins_over_only(self):
        self.assertEqual(select(self.tests, ["replication"], ["slow"]), ([self.cluster], True))

    def test_suites_and_failed_imports_are_always_kept(self):
        suite = unittest.TestSuite()
        holder = SkippedTest(self.cluster, "why")
        kept, removed = select([suite, holder, self.untagged], ["distributed"], [])
        self.assertEqual(kept, [suite, holder])
        self.assertTrue(removed)


class SkippedStandIn(unittest.TestCase):

    def test_reports_the_test_skipped_with_the_reason(self):
        test = Samples.Clustered("test_plain_method")
        stand_in = SkippedTest(test, "clusters are off")
        result = unittest.TestResult()
        stand_in(result)
        self.assertEqual(result.testsRun, 1)
        self.assertEqual(result.skipped, [(test, "clusters are off")])
        self.assertEqual((stand_in.id(), str(stand_in)), (test.id(), str(test)))
        self.assertEqual(stand_in.countTestCases(), 1)
        self.assertIsNone(Samples.Clustered.cluster)  # nothing acquired a cluster


if __name__ == "__main__":
    unittest.main()
