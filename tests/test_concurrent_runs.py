"""Four ``python -m disttest`` runs at once on one project share the machine safely.

The runs use the default port range and the machine's shared lock directory,
as four terminals (or ``tox -p``) would. Each class of the sample
(``tests/samples_failures/concurrent``) starts a service on every node's app
port, without which a shared port would go unnoticed, and checks that each
peer answers with its own cluster's id; it logs which ports it held and
when, so this test can look for two runs holding one port at the same time.
"""
from __future__ import annotations

import itertools
import json
import unittest

from tests import support
from tests.test_failures import FailureSample
from tests.test_runner_e2e import Run, spied

RUNS = 4
CLASSES = ["Service", "ServiceAgain", "ServiceBigger"]


def tearDownModule():
    support.shutdown_and_check()


class ConcurrentRuns(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.sample = sample = FailureSample(cls.addClassCleanup, "concurrent")
        started = [sample.start("-v", report=True,
                                env={"SAMPLE_PORTS_LOG": str(sample.path(f"ports-{i}.jsonl"))})
                   for i in range(RUNS)]
        cls.runs = []
        for proc, args, meta in started:  # every run first, then the leak checks
            try:
                stdout, stderr = proc.communicate(timeout=120)
            except Exception:
                for other, _, _ in started:
                    other.kill()
                raise
            agents, templates = spied(meta["spy"])
            report = json.loads(meta["report"].read_text()) if meta["report"].exists() else None
            cls.runs.append(Run(args, proc, stdout, stderr, agents, report,
                                templates=templates))
        cls.held = [[json.loads(line) for line in sample.read_lines(f"ports-{i}.jsonl")]
                    for i in range(RUNS)]

    def test_every_run_passes(self):
        for run in self.runs:
            with self.subTest(pid=run.pid):
                self.assertEqual(run.returncode, 0, run)
                self.assertEqual(run.counts(), {"run": 3, "status": "OK"}, run)
                self.assertEqual(run.report["cluster_starts"], 1, run)
                self.assertEqual(len(run.agents), 4, run)  # 3 nodes, grown to 4

    def test_every_class_held_its_ports_while_the_others_ran(self):
        for held in self.held:
            self.assertEqual([h["class"] for h in held], CLASSES)
        spans = [(min(h["since"] for h in held), max(h["until"] for h in held))
                 for held in self.held]
        # the runs really overlapped: each was serving while another one was
        for i, (start, end) in enumerate(spans):
            others = [s for j, s in enumerate(spans) if j != i]
            self.assertTrue(any(start < o_end and o_start < end for o_start, o_end in others),
                            spans)

    def test_no_port_was_held_by_two_runs_at_once(self):
        for (i, a), (j, b) in itertools.combinations(enumerate(self.held), 2):
            for x, y in itertools.product(a, b):
                shared = set(x["ports"]) & set(y["ports"])
                overlap = x["since"] < y["until"] and y["since"] < x["until"]
                self.assertFalse(shared and overlap,
                                 f"runs {i} and {j} both held {sorted(shared)}: {x} {y}")
        ports = [p for held in self.held for h in held for p in h["ports"]]
        self.assertTrue(all(20000 <= p <= 29999 for p in ports), ports)  # the default range

    def test_no_node_is_left(self):
        for run in self.runs:
            FailureSample.check_no_leaks(run)
        support.assert_no_leaks()


if __name__ == "__main__":
    unittest.main()
