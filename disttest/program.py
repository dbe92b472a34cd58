"""``python -m disttest`` and ``disttest.main()``: unittest's TestProgram, extended.

Every ``python -m unittest`` argument keeps its meaning (the parsers are
unittest's own); disttest adds its options to the shared parent parser, loads
the configuration once (an error there exits with status 2 before any test
is imported) and runs with :class:`DistributedTestRunner`.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import unittest

from disttest.errors import ConfigError, DisttestError
from disttest.loader import DistributedTestLoader
from disttest.interrupts import RunnerTerminated
from disttest.requirements import check_size_override, cluster_size_option
from disttest.options import FALLBACKS, HELP, RunOptions
from disttest.runner import DistributedTestRunner


def _shard(text: str) -> tuple[int, int]:
    from disttest.sharding import parse_shard

    try:
        return parse_shard(text)
    except ConfigError as error:
        # argparse already names the option: say what was given and what is allowed.
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; --shard must be "
            f"{getattr(error, 'allowed', 'K/N with 1 <= K <= N')} (the K-th of N shards, "
            "counted from 1)") from None


def _jobs(text: str) -> int | str:
    from disttest.parallel.schedule import parse_jobs

    try:
        return parse_jobs(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; --jobs must be a whole number of workers from 1 up, "
            "or auto (the usable cores, or fewer when memory is short)") from None


SUBCOMMANDS_HELP = """

Subcommands (each has its own --help):
  python -m disttest config      every effective setting and where it came from
  python -m disttest preflight   check this machine; say how to fix each problem
  python -m disttest cluster     start|status|logs|stop|clean kept clusters"""


class DistributedTestProgram(unittest.TestProgram):
    """A command-line program that runs tests, planning their clusters."""

    config = None
    # Defaults of disttest's own options, for when no parser sets them.
    only = exclude = None
    no_distributed = force_cluster = plan = cluster_debug = simulate = False
    keep_cluster = strict_cleanup = False
    save_cluster_logs = shard = durations_file = seed = jobs = None
    cluster_size = fallback = json_report = junit_xml = html_report = ci = None
    durations = None  # --durations N (unittest's own from Python 3.12 on)
    no_reuse = False

    def __init__(self, module="__main__", defaultTest=None, argv=None, testRunner=None,
                 testLoader=None, **kwargs) -> None:
        super().__init__(module=module, defaultTest=defaultTest, argv=argv,
                         testRunner=testRunner or DistributedTestRunner,
                         testLoader=testLoader or DistributedTestLoader(), **kwargs)

    # -- arguments --------------------------------------------------------------------
    def _getParentArgParser(self):
        parser = super()._getParentArgParser()
        if sys.version_info < (3, 12):
            # What unittest has from 3.12 on, on every Python.
            parser.add_argument("--durations", dest="durations", type=int, default=None,
                                metavar="N", help="Show the N slowest test cases (N=0 for all)")
        group = parser.add_argument_group("disttest options")
        group.add_argument("--only", action="append", metavar="TAG",
                           help="run only tests with this tag (repeatable; "
                                "'distributed' is on every cluster test)")
        group.add_argument("--exclude", action="append", metavar="TAG",
                           help="leave out tests with this tag (repeatable)")
        group.add_argument("--no-distributed", action="store_true",
                           help="skip cluster tests, each reported as skipped")
        group.add_argument("--force-cluster", action="store_true",
                           help="start a default cluster for plain tests too "
                                "(disttest.current_cluster())")
        group.add_argument("--cluster-size", type=cluster_size_option, metavar="N",
                           help=HELP["--cluster-size"])
        group.add_argument("--no-reuse", action="store_true",
                           help="a fresh cluster for every class")
        group.add_argument("--fallback", choices=FALLBACKS, help=HELP["--fallback"])
        group.add_argument("--simulate", action="store_true", help=HELP["--simulate"])
        ci = group.add_mutually_exclusive_group()
        ci.add_argument("--ci", dest="ci", action="store_const", const=True,
                        help="force disttest's CI mode on (default: detected)")
        ci.add_argument("--no-ci", dest="ci", action="store_const", const=False,
                        help="force disttest's CI mode off (default: detected)")
        group.add_argument("--keep-cluster", action="store_true", help=HELP["--keep-cluster"])
        group.add_argument("--strict-cleanup", action="store_true",
                           help="fail the run when it leaves a process, port lock or "
                                "temporary directory behind")
        group.add_argument("--save-cluster-logs", metavar="DIR",
                           help="keep every node's log under DIR/run-*/<cluster>/")
        group.add_argument("--seed", type=int, metavar="N",
                           help="seed of every nemesis fault schedule (replays a failure's)")
        group.add_argument("--shard", type=_shard, metavar="K/N",
                           help="run the K-th of N shards (a cluster's classes stay together)")
        group.add_argument("-j", "--jobs", type=_jobs, metavar="N",
                           help="run on N worker processes at once (auto: one per core); "
                                "classes sharing a cluster stay together")
        group.add_argument("--durations-file", metavar="PATH",
                           help="class durations that balance shards: recorded by a whole run, "
                                "read by --shard runs")
        group.add_argument("--plan", action="store_true",
                           help="print the groups and clusters that would start; run nothing")
        group.add_argument("--json-report", metavar="PATH",
                           help="write a JSON report with cluster data")
        group.add_argument("--html-report", metavar="PATH",
                           help="write one self-contained HTML page of the run: summary, "
                                "failures, each cluster's timeline, node logs per test")
        group.add_argument("--junit-xml", metavar="PATH",
                           help="write a JUnit XML report (Jenkins, GitLab, GitHub) "
                                "with cluster data")
        group.add_argument("--cluster-debug", action="store_true", help=HELP["--cluster-debug"])
        return parser

    def _cli_settings(self) -> dict:
        settings = {}
        if self.no_reuse:
            settings["reuse_clusters"] = False
        if self.fallback:
            settings["fallback"] = self.fallback
        if self.json_report:
            settings["json_report"] = self.json_report
        if self.junit_xml:
            settings["junit_xml"] = self.junit_xml
        if self.html_report:
            settings["html_report"] = self.html_report
        if self.cluster_debug:
            settings["verbose_cluster_logs"] = True
        if self.save_cluster_logs:
            settings["save_cluster_logs"] = self.save_cluster_logs
        if self.durations_file:
            settings["durations_file"] = self.durations_file
        return settings

    # No abbreviations: with disttest's options beside unittest's, a prefix could
    # mean another option on another Python (--durations vs --durations-file).
    def _getMainArgParser(self, parent):
        parser = super()._getMainArgParser(parent)
        parser.allow_abbrev = False
        return parser

    def _getDiscoveryArgParser(self, parent):
        parser = super()._getDiscoveryArgParser(parent)
        parser.allow_abbrev = False
        # The last help printed: it also names what runs instead of tests
        # (kept as written: raw, with unittest's own sentence wrapped here).
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = textwrap.fill(parser.epilog or "", 79) + SUBCOMMANDS_HELP
        return parser

    # -- loading ------------------------------------------------------------------------
    def createTests(self, from_discovery=False, Loader=None):
        self._load_config(from_discovery)
        super().createTests(from_discovery, Loader)

    def _load_config(self, from_discovery: bool) -> None:
        from disttest.config import load_config

        start = None
        if from_discovery:
            start = getattr(self, "top", None) or getattr(self, "start", None)
        try:
            self.config = load_config(start_dir=os.path.abspath(start) if start else None,
                                      cli=self._cli_settings(), ci=self.ci)
            check_size_override(self.cluster_size, self.config)
        except ConfigError as error:
            self._fail(error)


    @staticmethod
    def _fail(error: DisttestError, status: int = 2) -> None:
        sys.stderr.write(f"disttest: error: {error.diagnosis.render()}\n")
        sys.exit(status)

    # -- running ------------------------------------------------------------------------
    def _run_options(self) -> RunOptions:
        return RunOptions(only=self.only or [], exclude=self.exclude or [],
                          no_distributed=self.no_distributed,
                          force_cluster=self.force_cluster, cluster_size=self.cluster_size,
                          fallback=self.fallback, json_report=self.json_report,
                          junit_xml=self.junit_xml, html_report=self.html_report,
                          cluster_debug=self.cluster_debug,
                          simulate=self.simulate, keep_cluster=self.keep_cluster,
                          strict_cleanup=self.strict_cleanup, shard=self.shard,
                          catch_break=bool(self.catchbreak), jobs=self.jobs or 1)

    def runTests(self):
        if self.plan:
            return self._print_plan()
        if self.seed is not None:  # read by each Nemesis, here and in worker processes
            from disttest.history.nemesis import SEED_ENV
            os.environ[SEED_ENV] = str(self.seed)
        # The runner handles Ctrl-C itself, -c included (disttest.interrupts), so
        # that every cluster is stopped and an interrupted run never exits 0.
        runner_class = self.testRunner
        options = self._run_options()
        if isinstance(runner_class, type) and issubclass(runner_class, DistributedTestRunner):
            self.catchbreak = False
            # Made here, with the arguments unittest would pass, plus disttest's.
            kwargs = dict(verbosity=self.verbosity, failfast=self.failfast, buffer=self.buffer,
                          warnings=self.warnings, tb_locals=self.tb_locals)
            kwargs["durations"] = self.durations
            self.testRunner = runner_class(config=self.config, options=options, **kwargs)
        try:
            super().runTests()
        except SystemExit:
            interruption = getattr(self.result, "interruption", None)
            if interruption is not None:
                sys.exit(interruption.exit_status)
            raise
        except RunnerTerminated as stop:
            sys.exit(128 + stop.signum)
        except DisttestError as error:
            self._fail(error, 1)

    def _print_plan(self) -> None:
        from disttest.planner import format_plan, iter_tests, problems
        from disttest.session import class_requirement

        runner = DistributedTestRunner(config=self.config, options=self._run_options())
        tests = list(iter_tests(self.test))
        # What a run would report before any test ran fails the plan as well.
        errors = problems(tests, lambda cls, methods: class_requirement(
            cls, self.config, self.cluster_size, methods))
        for error in errors:
            print(f"disttest: error: {error}", file=sys.stderr)
        planned, _, _ = runner.plan(tests)
        if self.shard:
            print(f"shard {self.shard[0]}/{self.shard[1]}:")
        print(format_plan(planned))
        if self.jobs not in (None, 1):
            from disttest.parallel import schedule

            jobs = schedule.resolve_jobs(self.jobs, planned)
            print(schedule.describe(runner.work_items(planned, jobs), jobs,
                                    planned.cluster_starts))
        if self.exit:
            sys.exit(2 if errors else 0)


def main(module="__main__", **kwargs) -> DistributedTestProgram:
    """Like ``unittest.main()``, with disttest's planning and reports."""
    return DistributedTestProgram(module=module, **kwargs)
