"""A reporter that fails is said at the end of the run, and changes no outcome.

A subscriber of the run's events that raises must not break the run, and
must not go unnoticed either: the run ends with one "internal error in
<reporter>" line per failing reporter; the exit status stays the tests'.
"""
from __future__ import annotations

import unittest

from disttest.events import EventBus
from tests import support
from tests.test_runner_e2e import Sample


def tearDownModule():
    support.shutdown_and_check()


class EventBusTests(unittest.TestCase):

    def test_a_failing_subscriber_is_counted_and_the_others_still_hear(self):
        bus, heard = EventBus(), []

        def broken(event):
            raise KeyError(event.kind)

        bus.subscribe(broken)
        bus.subscribe(heard.append)
        bus.emit("warning", message="one")
        bus.emit("warning", message="two")
        self.assertEqual([e.message for e in heard], ["one", "two"])
        (line,) = bus.failure_lines()
        self.assertRegex(line, r"^disttest: internal error in EventBusTests\.test_a_failing_"
                         r"subscriber_is_counted_and_the_others_still_hear\.<locals>\.broken "
                         r"\(2 times, first: KeyError: 'warning' at .*test_reporter_failures"
                         r"\.py:\d+\); the report above may be incomplete")

    def test_nothing_failed_nothing_said(self):
        bus = EventBus()
        bus.subscribe(lambda event: None)
        bus.emit("warning", message="fine")
        self.assertEqual(bus.failure_lines(), [])


class RunTests(unittest.TestCase):

    def test_failing_reporters_end_the_output_and_the_exit_status_is_the_tests(self):
        sample = Sample(self.addCleanup, "reporterfail")
        run = sample.run("discover", "-s", "tests", "-t", ".")
        self.assertEqual(run.returncode, 0, run)
        self.assertIn("Ran 2 tests", run.stderr, run)
        last = run.stderr.rstrip().splitlines()[-2:]
        self.assertRegex(last[0], r"^disttest: internal error in ConsoleProgress\.on_event "
                         r"\(1 time, first: AttributeError: node at disttest/events\.py:\d+\)",
                         run)
        self.assertRegex(last[1], r"^disttest: internal error in broken \(\d+ times, first: "
                         r"RuntimeError: this reporter is broken at .*test_reporting\.py:10\); "
                         r"the report above may be incomplete; the exit status is the tests' own",
                         run)
        self.assertNotIn("Traceback", run.stderr, run)

    def test_a_report_file_that_cannot_be_written_is_said_in_one_line(self):
        sample = Sample(self.addCleanup, "reporterfail")
        taken = sample.path("taken")
        taken.mkdir()  # a directory where the report file should go
        run = sample.run("discover", "-s", "tests", "-t", ".", "--json-report", str(taken))
        self.assertEqual(run.returncode, 0, run)
        self.assertRegex(run.stderr, r"\ndisttest: could not write the JSON report: \[Errno \d+\] "
                         r"Is a directory", run)
        self.assertNotIn("Traceback", run.stderr, run)


if __name__ == "__main__":
    unittest.main()
