"""--shard K/N: the shards of a selection are disjoint, add up to it exactly,
never split the classes one cluster serves, and are balanced by durations."""
import json
import unittest

from disttest.errors import ConfigError
from disttest.sharding import parse_shard
from tests.test_runner_e2e import Sample


def test_ids(run) -> set:
    return {t["id"] for t in run.report["tests"]}


class ShardingEndToEnd(unittest.TestCase):
    """Real runs of tests/samples/mixed (plain and cluster classes, several sizes)."""

    @classmethod
    def setUpClass(cls):
        cls.sample = Sample(cls.addClassCleanup, "mixed")
        cls.whole = cls.sample.run("-q", report=True)
        assert cls.whole.returncode == 0, str(cls.whole)

    def shard_runs(self, n: int) -> list:
        return [self.sample.run("-q", "--shard", f"{k}/{n}", report=True) for k in range(1, n + 1)]

    def test_union_of_the_shards_is_the_selection_for_n_1_to_5(self):
        everything = test_ids(self.whole)
        for n in range(1, 6):
            with self.subTest(n=n):
                runs = self.shard_runs(n)
                seen = []
                for run in runs:
                    self.assertEqual(run.returncode, 0, str(run))
                    seen.extend(test_ids(run))
                self.assertEqual(len(seen), len(set(seen)), "a test ran in two shards")
                self.assertEqual(set(seen), everything)

    def test_a_cluster_is_never_started_twice_across_shards(self):
        # The whole run starts one cluster per compatible chain of classes; a
        # shard either runs a chain whole or not at all.
        for n in (2, 3):
            with self.subTest(n=n):
                starts = sum(run.report["cluster_starts"] for run in self.shard_runs(n))
                self.assertEqual(starts, self.whole.report["cluster_starts"])

    def test_shards_are_deterministic(self):
        first = [sorted(test_ids(run)) for run in self.shard_runs(3)]
        second = [sorted(test_ids(run)) for run in self.shard_runs(3)]
        self.assertEqual(first, second)

    def test_plan_shows_what_a_shard_runs_and_starts_nothing(self):
        plan = self.sample.run("--plan", "--shard", "1/2")
        self.assertEqual(plan.returncode, 0, str(plan))
        self.assertIn("shard 1/2:", plan.stdout)
        self.assertNotIn("Ran ", plan.output)
        self.assertEqual(plan.agents, [])

    def test_durations_balance_the_shards(self):
        # History says one class is far heavier than everything else: it gets a
        # shard of its own, and every other test goes to the other shard.
        classes = {t["classname"] for t in self.whole.report["tests"]}
        heavy = "tests.test_plain.PlainFirst"  # a plain class of its own module
        self.assertIn(heavy, classes)
        history = {"classes": {c: (100.0 if c == heavy else 0.01) for c in classes}}
        path = self.sample.path("durations.json")
        path.write_text(json.dumps(history))
        runs = [self.sample.run("-q", "--shard", f"{k}/2", "--durations-file", str(path),
                                report=True) for k in (1, 2)]
        shards = [{t["classname"] for t in run.report["tests"]} for run in runs]
        alone = [s for s in shards if heavy in s]
        self.assertEqual(len(alone), 1)
        self.assertEqual(alone[0], {heavy})

    def test_a_whole_run_records_durations_and_shards_only_read_them(self):
        path = self.sample.path("recorded.json")
        run = self.sample.run("-q", "--durations-file", str(path))
        self.assertEqual(run.returncode, 0, str(run))
        recorded = json.loads(path.read_text())
        self.assertTrue(recorded["classes"])
        self.assertTrue(all(isinstance(v, float) for v in recorded["classes"].values()))
        before = path.read_text()
        shards = [self.sample.run("-q", "--shard", f"{k}/2", "--durations-file", str(path),
                                  report=True) for k in (1, 2)]
        self.assertEqual(path.read_text(), before)  # every shard saw the same history
        ids = [test_ids(run) for run in shards]
        self.assertFalse(ids[0] & ids[1])
        self.assertEqual(ids[0] | ids[1], test_ids(self.whole))

    def test_bad_shard_is_a_usage_error(self):
        for bad in ("0/3", "4/3", "x/2", "1"):
            with self.subTest(shard=bad):
                run = self.sample.run("--shard", bad)
                self.assertEqual(run.returncode, 2, str(run))
                self.assertIn("--shard", run.stderr)
                self.assertIn("K/N", run.stderr)


class ParseShardTest(unittest.TestCase):
    def test_parses(self):
        self.assertEqual(parse_shard("2/4"), (2, 4))
        self.assertEqual(parse_shard("1/1"), (1, 1))

    def test_rejects_with_what_is_allowed(self):
        for bad in ("0/1", "3/2", "a/b", "1/0", "12"):
            with self.subTest(shard=bad), self.assertRaises(ConfigError) as caught:
                parse_shard(bad)
            self.assertIn("K/N", str(caught.exception))


if __name__ == "__main__":
    unittest.main()

