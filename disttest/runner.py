"""DistributedTestRunner: unittest's text runner, running a cluster plan.

``run(test)`` selects (tags), plans (planner), activates a session whose pool
the test classes acquire from, lets ``TextTestRunner.run`` do the rest, then
stops every cluster and prints what they cost. A suite without cluster tests
runs exactly as under unittest, unreordered and with nothing added to the
output.
"""
from __future__ import annotations

import os
import sys
import unittest

from disttest.errors import DisttestError
from disttest.interrupts import InterruptHandlers, InterruptibleSuite, RunnerTerminated
from disttest.loader import SkippedTest, select, unknown_tags
from disttest.options import RunOptions
from disttest.planner import is_cluster_class, iter_tests, let_go, plan as make_plan, unkeepable
from disttest.result import DistributedTestResult, PlainTestResult, RunCheck

# Reports, events and sharding are imported where they are used: a suite that
# never touches clusters runs without them (see ``DistributedTestRunner.run``).

__unittest = True


class DistributedTestRunner(unittest.TextTestRunner):
    """unittest's text runner, planning cluster tests so classes share clusters.

    Takes every ``TextTestRunner`` argument, plus ``config`` (a ``Config``;
    loaded from the project when omitted) and ``options`` (``RunOptions``: the
    command line's selection, sizes, fallback and reports). A run plans the
    suite (classes that can share a cluster run together), lends each class
    its cluster, stops or keeps every cluster at the end, proves nothing of
    its own is left, and prints the cluster summary after unittest's. A suite
    that does not use disttest runs exactly as under ``TextTestRunner``.
    """

    resultclass = DistributedTestResult
    # Modules the planner keeps whole besides those with setUpModule: a foreign
    # runner's module-wide fixtures (the pytest plugin sets it).
    whole_modules: frozenset = frozenset()

    def __init__(self, *args, config=None, options: RunOptions | None = None, **kwargs) -> None:
        if sys.version_info < (3, 12):
            # --durations N: unittest prints the slowest tests from 3.12 on; before,
            # the result does it the same way.
            self.slowest_wanted = kwargs.pop("durations", None)
        super().__init__(*args, **kwargs)
        self.config = config
        self.options = options or RunOptions()
        self.last_result: DistributedTestResult | None = None
        self.stats = None  # RunStats of the last run
        self.timeline = None  # its TimelineEvents, when an HTML report is wanted
        self._interrupts: InterruptHandlers | None = None

    def _makeResult(self):
        result = super()._makeResult()
        self.last_result = result
        if self._interrupts is not None:
            self._interrupts.result = result
        if sys.version_info < (3, 12):
            result.slowest_wanted = self.slowest_wanted
        if isinstance(result, DistributedTestResult):
            result.before_report = self._finish_clusters
        return result

    def _finish_clusters(self, result) -> None:
        """Keep or stop every cluster, then prove nothing of ours is left."""
        from disttest import session as _session

        session = _session.peek()
        if session is not None:
            session.finish(self.keep_ttl(self._config()))
        # Every leak of the run: found while stopping clusters, or by the check after.
        leaks = self.stats.leaks if self.stats is not None else []
        if leaks and self.options.strict_cleanup:
            try:
                raise DisttestError(
                    "the run left resources behind: " + "; ".join(l["detail"] for l in leaks),
                    "a node's service or a test started something disttest did not stop",
                    ["see the leak lines in the cluster summary",
                     "register this_node.on_reset callbacks that stop what a test starts"],
                    kind="leak")
            except DisttestError:
                result.addError(RunCheck("disttest cleanup check (--strict-cleanup)"),
                                sys.exc_info())

    def _config(self):
        if self.config is None:
            from disttest.config import load_config

            self.config = load_config()
        return self.config

    def _plain_run(self, config, tests: list) -> bool:
        """True when nothing of disttest's is wanted: no test module refers to
        disttest, and no selection, shard, forced cluster or report was asked for."""
        options = self.options
        if (options.only or options.exclude or options.shard or options.force_cluster
                or options.jobs != 1
                or options.json_report or config.json_report or options.junit_xml
                or config.junit_xml or options.html_report or config.html_report
                or "disttest.case" in sys.modules):
            return False
        modules = {type(t).__module__ for t in tests}
        return not any(_refers_to_disttest(sys.modules.get(name)) for name in modules)

    def run(self, test):
        config = self._config()
        tests = list(iter_tests(test))
        if self._plain_run(config, tests):
            # Exactly unittest's run, at unittest's cost: no reference to a test
            # is kept here, so each is freed when its suite lets go of it.
            del tests
            self.resultclass = PlainTestResult
            with InterruptHandlers(self.options.catch_break) as self._interrupts:
                result = super().run(InterruptibleSuite(test))
            self._say_interrupted(result)
            return result
        from disttest import session as _session
        from disttest.events import EventBus
        from disttest.report.colors import Painter, color_enabled
        from disttest.report.console import ConsoleProgress
        from disttest.report.failures import FailureLogs
        from disttest.report.stats import RunStats
        from disttest.requirements import Requirement

        options = self.options
        events = EventBus()
        stats = self.stats = RunStats()
        events.subscribe(stats.on_event)
        timeline = self.timeline = None
        if options.html_report or config.html_report:
            from disttest.report.html import TimelineEvents

            timeline = self.timeline = TimelineEvents()
            events.subscribe(timeline.on_event)

        plan, filtered, has_cluster_tests = self.plan(tests)
        del tests  # from here only the suite that runs them holds the tests
        if options.keep_cluster:
            refused = unkeepable(plan.requirements)
            if refused:
                self._note(f"warning: --keep-cluster: {refused}")
        debug = options.cluster_debug or config.verbose_cluster_logs
        parallel = self._parallel_suite(plan, events, debug)
        if parallel is not None:
            suite = parallel  # its units hold the tests until their item has run
            stats.workers = parallel.jobs
            let_go(test)
        elif not plan.reordered and not filtered:
            plan.take_tests()
            suite = test  # nothing to plan: run exactly what unittest would
        else:
            suite = unittest.TestSuite(plan.take_tests())
            let_go(test)
        paint = Painter(color_enabled(self.stream, config.ci))
        session = _session.Session(config, events, planned=plan.requirements,
                                   size_override=options.cluster_size, fallback=options.fallback,
                                   simulate=options.simulate,
                                   keep=self.keep_ttl(config) > 0)
        live = bool(getattr(self.stream, "isatty", lambda: False)()) and not config.ci \
            and not debug and parallel is None  # workers' lines would land inside a live one
        progress = ConsoleProgress(self.stream, paint, self._mid_line, self.verbosity,
                                   debug=debug, live=live)
        events.subscribe(progress.on_event)
        failure_logs = FailureLogs(self.stream, lambda: self.last_result,
                                   config.ci_provider == "GitHub Actions", self._mid_line)
        if config.ci:  # a CI log is all there is afterwards: keep the nodes' side of failures
            events.subscribe(failure_logs.on_event)
        if config.ci and self.verbosity and (has_cluster_tests or options.force_cluster):
            self.stream.writeln(f"disttest: CI detected ({config.ci_provider}): "
                                f"fallback {config.effective_fallback}, timeouts "
                                f"x{config.timeout_multiplier:g}")
        result = None
        interrupts = self._interrupts = InterruptHandlers(options.catch_break)
        with _session.activate(session), interrupts:
            try:
                if options.force_cluster and parallel is None:  # else each worker's own
                    session.forced_cluster = session.pool.acquire(
                        Requirement(options.cluster_size or config.default_cluster_size))
                result = super().run(InterruptibleSuite(suite))
            finally:
                session.shutdown()
                stats.finished = stats.started + stats.duration_s
                result = result or self.last_result
                self._report(result, stats, paint, plan, config, events)
                failure_logs.annotations()
                for line in events.failure_lines():
                    self.stream.writeln(line)
                self.stream.flush()
        self._say_interrupted(result)
        return result

    def _say_interrupted(self, result) -> None:
        """One line naming what interrupted the run, after everything else."""
        interruption = getattr(result, "interruption", None)
        if interruption is not None:
            self.stream.writeln(interruption.describe(result.testsRun))
            self.stream.flush()

    def _parallel_suite(self, plan, events, debug: bool):
        """The suite that runs ``plan`` on ``-j`` workers, or None to run it here
        (one job, or nothing to share out)."""
        if self.options.jobs == 1:
            return None
        from disttest.parallel import schedule

        jobs = schedule.resolve_jobs(self.options.jobs, plan)
        items = self.work_items(plan, jobs)
        if jobs < 2 or len(items) < 2:
            return None
        if not hasattr(os, "fork"):
            raise DisttestError(
                f"-j {self.options.jobs} needs os.fork, which this platform lacks",
                "workers are forked from the runner after it has loaded and planned the tests",
                ["run without -j (or with -j 1) here", "use --shard K/N to split the run "
                 "across separate processes or machines instead"], kind="jobs")
        from disttest.parallel.controller import ParallelSuite

        config = self._config()
        settings = dict(config=config, options=self.options, verbosity=self.verbosity,
                        descriptions=self.descriptions,
                        buffer=self.buffer, tb_locals=getattr(self, "tb_locals", False),
                        failfast=self.failfast, debug=debug, keep_ttl=self.keep_ttl(config),
                        requirements=plan.requirements)
        return ParallelSuite(schedule.all_units(plan), items, jobs, settings, events)

    def work_items(self, plan, jobs: int) -> list:
        """``plan`` cut into work items for ``jobs`` workers (longest first)."""
        from disttest import durations
        from disttest.parallel import schedule

        config = self._config()
        history = durations.load_durations(durations.durations_path(config), self._note)
        return schedule.make_items(plan, jobs, history, reuse=config.reuse_clusters)

    def keep_ttl(self, config) -> float:
        """Seconds idle clusters outlive the run: keep_clusters_ttl, else 600 with
        --keep-cluster, else 0 (not kept)."""
        return config.keep_clusters_ttl or (600.0 if self.options.keep_cluster else 0.0)

    def plan(self, tests: list) -> tuple:
        """(plan, whether selection changed the suite, whether cluster tests remain).

        Selection (tags), skipping when clusters are off, planning and sharding:
        the one sequence both a run and ``--plan`` go through.
        """
        config, options = self._config(), self.options
        selected, filtered = select(tests, options.only, options.exclude)
        warning = unknown_tags(tests, options.only, options.exclude)
        if warning:
            self._note(f"warning: {warning}")
        reason = _skip_reason(options, config)
        has_cluster_tests = any(is_cluster_class(type(t)) for t in selected)
        if reason and has_cluster_tests:
            selected = [SkippedTest(t, reason) if is_cluster_class(type(t)) else t
                        for t in selected]
            filtered = True
        plan = make_plan(selected, self.requirement_for, reuse=config.reuse_clusters,
                         whole_modules=self.whole_modules)
        if options.shard:
            from disttest import durations, sharding

            plan = sharding.shard(plan, *options.shard,
                                  durations.load_durations(durations.durations_path(config),
                                                           self._note))
        return plan, filtered, has_cluster_tests

    def requirement_for(self, cls: type, methods: list[str]):
        from disttest.requirements import class_requirement

        try:
            requirement = class_requirement(cls, self._config(),
                                         self.options.cluster_size, methods)
            return requirement.as_simulated() if self.options.simulate else requirement
        except DisttestError:
            return None  # a bad declaration: the class reports it as its own error

    def _note(self, text: str) -> None:
        self.stream.writeln(f"disttest: {text}")

    def _mid_line(self) -> bool:
        result = self.last_result
        if result is None or not result.mid_line:
            return False
        result.mid_line = False
        return True

    def _report(self, result, stats, paint, plan, config, events) -> None:
        """Every report of the run; one that fails is noted (see events.py), not raised."""
        if result is None:
            return
        for name, write in (("the summary", self._write_summary),
                            ("the JSON report", self._write_json_report),
                            ("the JUnit report", self._write_junit_report),
                            ("the HTML report", self._write_html_report),
                            ("the durations history", self._write_durations)):
            try:
                write(result, stats, paint, config)
            except OSError as exc:  # a report file that cannot be written: not a bug
                self.stream.writeln(f"disttest: could not write {name}: {exc}")
            except Exception as exc:
                events.record_failure(name, exc)

    def _write_summary(self, result, stats, paint, config) -> None:
        from disttest.report.console import closing_line, render_summary

        # Classes a cluster actually served: not the plan's, which also counts classes
        # that failfast, Ctrl-C or a failed start kept from ever getting one.
        cluster_classes = len({name for usage in result.cluster_usage.values()
                               for name in usage["classes"]})
        summary = render_summary(stats, result.cluster_usage, paint, cluster_classes)
        if summary and self.verbosity:
            from disttest.report.histories import render_histories

            self.stream.writeln(summary)
            histories = render_histories(result.records)
            if histories:
                self.stream.writeln(histories)
            self.stream.writeln(closing_line(result))
            self.stream.flush()

    def _write_json_report(self, result, stats, paint, config) -> None:
        path = self.options.json_report or config.json_report
        if path:
            from disttest.report import json_report

            json_report.write(path, json_report.build(result, stats, config))

    def _write_junit_report(self, result, stats, paint, config) -> None:
        path = self.options.junit_xml or config.junit_xml
        if path:
            from disttest.report import junit

            junit.write(path, result, stats, config)

    def _write_html_report(self, result, stats, paint, config) -> None:
        path = self.options.html_report or config.html_report
        if path and self.timeline is not None:
            from disttest.report import html

            html.write(path, html.build(result, stats, self.timeline, config, path))

    def _write_durations(self, result, stats, paint, config) -> None:
        if result.records and (config.durations_file or self.options.jobs != 1) \
                and not self.options.shard and getattr(result, "interruption", None) is None:
            # History for balancing shards and -j workers, recorded by whole runs
            # only: the shards of one selection must all see the same history, or
            # they would disagree on who runs what. -j runs record into the default
            # file too, so the next one hands out its longest items first. An
            # interrupted run's durations are partial: it records none.
            from disttest import durations

            try:
                durations.save_durations(durations.durations_path(config), result, stats,
                                         self._note)
            except (OSError, DisttestError) as error:  # history is a help, never a failure
                self.stream.writeln(f"disttest: could not record durations: {error}")


def _refers_to_disttest(module) -> bool:
    """Does a test module use disttest (the package, a submodule, or a name from it)?"""
    if module is None:
        return False
    for value in vars(module).values():
        name = getattr(value, "__name__", "") if isinstance(value, type(sys)) else \
            getattr(value, "__module__", "") or ""
        if name == "disttest" or name.startswith("disttest."):
            return True
    return False


def _skip_reason(options: RunOptions, config) -> str | None:
    from disttest.session import skip_reason

    return skip_reason(config, options.no_distributed)
