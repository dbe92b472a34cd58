"""The pytest plugin: disttest's plan, reuse, tags and reports under pytest.

Installed with disttest (the ``pytest11`` entry point ``disttest.pytest_plugin``),
or loaded from a source checkout with ``-p disttest.pytest_plugin``. It adds
its options to every pytest run and does nothing else unless the collection
holds ``DistributedTestCase`` classes. Then:

- every unittest test gets its disttest tags as markers (``-m distributed``,
  ``-m "not slow"``), and every cluster test an ``xdist_group`` per cluster
  compatibility, so pytest-xdist's ``--dist loadgroup`` keeps the classes
  that can share a cluster on one worker (other modes get a warning);
- after pytest has deselected, the remaining items are ordered as
  ``python -m disttest`` orders them (the runner's own planning sequence:
  plain tests first, then cluster classes grouped so each cluster starts
  once; classes and modules with module fixtures kept whole), and the run's session
  stops a cluster as soon as no later class needs it;
- each cluster test's JUnit ``<testcase>`` carries the cluster properties of
  disttest's own report, and the cluster usage summary ends pytest's
  terminal summary (one per worker under xdist).

The plugin drives disttest only through what ``python -m disttest`` uses
(runner planning, Session, events, reports); the core never imports pytest.
"""
from __future__ import annotations

import signal
import sys
import unittest

import pytest

from disttest.options import FALLBACKS, HELP  # imports nothing: every pytest run loads this
_SUMMARY_KEY = "disttest_summary"  # in an xdist worker's output


def _cluster_size(text: str) -> int:
    # Imported when the option is given: every pytest run loads this module.
    from disttest.requirements import cluster_size_option

    return cluster_size_option(text)


def pytest_addoption(parser) -> None:
    group = parser.getgroup("disttest", "disttest clusters")
    group.addoption("--cluster-size", type=_cluster_size, metavar="N", help=HELP["--cluster-size"])
    group.addoption("--simulate", action="store_true", help=HELP["--simulate"])
    group.addoption("--keep-cluster", action="store_true", help=HELP["--keep-cluster"])
    group.addoption("--cluster-debug", action="store_true", help=HELP["--cluster-debug"])
    group.addoption("--fallback", choices=FALLBACKS, help=HELP["--fallback"])


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "distributed: a disttest cluster test "
                                       "(implied on every DistributedTestCase)")
    config.pluginmanager.register(DisttestPytest(config), "disttest-session")


def _is_unittest_item(item) -> bool:
    cls = getattr(item, "cls", None)
    return isinstance(cls, type) and issubclass(cls, unittest.TestCase)


class _Opaque:
    """Stands for a non-unittest item in the plan: kept where it is, never grouped."""

    def __init__(self, item) -> None:
        self.item = item


def _stand_in(item):
    """What the planner sees for ``item``: its unittest test, else an opaque one."""
    if _is_unittest_item(item):
        try:
            return item.cls(item.name)
        except Exception:  # a TestCase that cannot be made this way: planned as it is
            pass
    return _Opaque(item)


class _TerminalStream:
    """What ConsoleProgress writes to: pytest's terminal, past output capture
    (events come while a class fixture or a test runs), as live logging does."""

    def __init__(self, config, reporter) -> None:
        self.capture = config.pluginmanager.get_plugin("capturemanager")
        self.reporter = reporter

    def write(self, text: str) -> None:
        if self.capture is None:
            self.reporter.write(text)
            self.reporter.flush()
            return
        with self.capture.global_and_fixture_disabled():
            self.reporter.write(text)
            self.reporter.flush()

    def flush(self) -> None:
        pass  # every write is flushed


class DisttestPytest:
    """The per-run state of the plugin (registered by ``pytest_configure``)."""

    def __init__(self, config) -> None:
        self.config = config
        self.runner = None   # DistributedTestRunner: options, configuration, planning
        self.session = None  # disttest Session of this run, once there are cluster tests
        self.stats = None
        self.usage: dict[str, dict] = {}  # cluster id -> classes, tests, failures
        self.item_cluster: dict[str, str] = {}  # nodeid -> cluster id
        self.failed: set[str] = set()
        self.summaries: dict[str, str] = {}  # xdist worker id -> its summary
        self.planned: dict = {}  # class -> Requirement, from the plan
        self.cluster_items: set[str] = set()  # node ids of the planned cluster tests
        self.progress_pending = False  # pytest wrote since our last progress line

    # -- collection ----------------------------------------------------------------
    def _disttest_runner(self):
        if self.runner is None:
            from disttest.config import load_config
            from disttest.errors import ConfigError
            from disttest.requirements import check_size_override
            from disttest.options import RunOptions
            from disttest.runner import DistributedTestRunner

            option = self.config.option
            cli = {"fallback": option.fallback} if option.fallback else {}
            if option.cluster_debug:
                cli["verbose_cluster_logs"] = True
            size = option.cluster_size
            try:  # the project's configuration, as python -m disttest reads it
                config = load_config(start_dir=str(self.config.rootpath), cli=cli)
                check_size_override(size, config)
            except ConfigError as error:
                raise pytest.UsageError(f"disttest: {error.diagnosis.render()}") from None
            options = RunOptions(cluster_size=size, simulate=option.simulate,
                                 keep_cluster=option.keep_cluster, fallback=option.fallback,
                                 cluster_debug=option.cluster_debug)
            self.runner = DistributedTestRunner(stream=sys.stderr, config=config,
                                                options=options)
        return self.runner

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session, config, items) -> None:
        """Before pytest's -m/-k deselection: tags become markers, and what
        must run on one xdist worker gets one xdist_group."""
        if "disttest.case" not in sys.modules:
            return  # nothing collected imports disttest: no cluster test, no tag
        from disttest.loader import tags_of
        from disttest.planner import is_cluster_class, make_units

        if not any(_is_unittest_item(i) and is_cluster_class(i.cls) for i in items):
            return
        runner = self._disttest_runner()
        known: set[str] = set()
        by_test = {}
        for item in items:
            test = _stand_in(item)
            if isinstance(test, _Opaque):
                continue
            by_test[id(test)] = (item, test)
            for tag in sorted(tags_of(test)):
                if tag not in known:
                    known.add(tag)
                    config.addinivalue_line("markers", f"{tag}: disttest tag")
                item.add_marker(tag)
        # The planner's units (a class, or a module with fixtures) that hold
        # cluster classes: one group per cluster compatibility, so a worker
        # gets every class that could share its cluster, and a module whole.
        if hasattr(config, "workerinput") and not config.getvalue("loadgroup"):
            import warnings

            warnings.warn(pytest.PytestWarning(
                "disttest: cluster classes may be split across xdist workers, each starting "
                "its own clusters; run with --dist loadgroup to keep the classes that share "
                "a cluster on one worker"))
        if not config.pluginmanager.hasplugin("xdist"):
            return  # groups mean something to pytest-xdist only (and its marker with it)
        whole = _modules_with_module_fixtures(items)
        for unit in make_units([t for _, t in by_test.values()], whole):
            needs = [(cls, runner.requirement_for(cls, [])) for cls in unit.classes
                     if is_cluster_class(cls)]
            if not needs:
                continue
            cls, requirement = max(needs, key=lambda n: n[1].size if n[1] else 0)
            group = _xdist_group(cls, requirement)
            for test in unit.tests:
                by_test[id(test)][0].add_marker(pytest.mark.xdist_group(group))

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_collection_finish(self, session):
        """After deselection: plan the run and order the items by the plan."""
        if self.runner is not None:
            session.items[:] = self._plan(session.items)
            _warn_if_groups_are_ignored(session.config, session.items)
        yield

    def _plan(self, items: list) -> list:
        from disttest.planner import is_cluster_class

        stand_ins, by_id = [], {}
        for item in items:
            test = _stand_in(item)
            stand_ins.append(test)
            by_id[id(test)] = item
        runner = self.runner
        runner.whole_modules = frozenset(_modules_with_module_fixtures(items))
        plan, _, has_cluster_tests = runner.plan(stand_ins)
        self.planned = plan.requirements
        if not has_cluster_tests:
            return items
        ordered = [by_id.get(id(getattr(t, "test", t))) for t in plan.ordered_tests()]
        if None in ordered or len(ordered) != len(items):  # never lose an item
            return items
        self.cluster_items = {i.nodeid for i in items
                              if _is_unittest_item(i) and is_cluster_class(i.cls)}
        return ordered

    # -- running -------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtestloop(self, session):
        # trylast: inside other plugins' wrappers (pytest-cov's), so every node
        # has stopped and saved its coverage before they finish.
        if not self.cluster_items:
            yield
            return
        from disttest import session as _session
        from disttest.events import EventBus
        from disttest.report.stats import RunStats

        runner, option = self.runner, self.config.option
        events = EventBus()
        self.stats = RunStats()
        events.subscribe(self.stats.on_event)
        keep = runner.keep_ttl(runner.config)
        self.session = _session.Session(runner.config, events, planned=self.planned,
                                        size_override=option.cluster_size,
                                        fallback=option.fallback, simulate=option.simulate,
                                        keep=keep > 0)
        self._subscribe_progress(events)
        previous = self._on_sigterm()
        try:
            with _session.activate(self.session):
                try:
                    yield
                finally:
                    self._finish(keep)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _finish(self, keep: float) -> None:
        self.session.finish(keep)
        self.stats.finished = self.stats.started + self.stats.duration_s

    def _subscribe_progress(self, events) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        debug = self.runner.config.verbose_cluster_logs  # --cluster-debug sets it
        verbosity = 1 if debug else max(0, self.config.option.verbose)
        if reporter is None or not verbosity:
            return
        from disttest.report.colors import Painter
        from disttest.report.console import ConsoleProgress

        def mid_line() -> bool:
            pending, self.progress_pending = self.progress_pending, False
            return pending

        progress = ConsoleProgress(_TerminalStream(self.config, reporter), Painter(False), mid_line,
                                   verbosity, debug=debug)
        events.subscribe(progress.on_event)

    def _on_sigterm(self):
        """SIGTERM ends the run like Ctrl-C, so the clusters are stopped."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None
        from disttest import coverage_support

        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_DFL and not coverage_support.is_coverage_handler(previous):
            return None

        def interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)
        return previous

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        yield
        # The class fixture has run: its cluster is the class's now.
        if item.nodeid not in self.cluster_items:
            return
        cluster = item.cls.__dict__.get("cluster")
        if cluster is None:
            return
        self.item_cluster[item.nodeid] = cluster.id
        usage = self.usage.setdefault(cluster.id, {"classes": [], "tests": 0, "failures": 0})
        usage["tests"] += 1
        label = f"{item.cls.__module__}.{item.cls.__qualname__}"
        if label not in usage["classes"]:
            usage["classes"].append(label)
        stats = self.stats.clusters.get(cluster.id) if self.stats is not None else None
        item.user_properties.append(("disttest.cluster.id", cluster.id))
        if stats is not None:  # the names and values of disttest's own JUnit report
            item.user_properties.extend([
                ("disttest.cluster.size", str(stats.size)),
                ("disttest.cluster.simulated", "true" if stats.simulated else "false"),
                ("disttest.cluster.startup_s", f"{stats.startup_s:.3f}"),
                ("disttest.cluster.reused",
                 "true" if stats.reused_from_previous_run else "false")])

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        if self.config.option.verbose > 0:
            self.progress_pending = True  # pytest -v wrote the test's name

    def pytest_runtest_logreport(self, report) -> None:
        self.progress_pending = True
        cluster = self.item_cluster.get(report.nodeid)
        if cluster and report.failed and report.nodeid not in self.failed:
            self.failed.add(report.nodeid)
            self.usage[cluster]["failures"] += 1

    # -- reporting -----------------------------------------------------------------
    def _summary(self) -> str:
        if self.stats is None:
            return ""
        from disttest.report.colors import Painter
        from disttest.report.console import render_summary

        classes = len({c for usage in self.usage.values() for c in usage["classes"]})
        return render_summary(self.stats, self.usage, Painter(False), classes)

    def pytest_sessionfinish(self, session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller prints it
            workeroutput[_SUMMARY_KEY] = self._summary()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        summary = getattr(node, "workeroutput", {}).get(_SUMMARY_KEY)
        if summary:
            self.summaries[node.gateway.id] = summary

    def pytest_terminal_summary(self, terminalreporter) -> None:
        summaries = dict(self.summaries)
        own = self._summary()
        if own:
            summaries[""] = own
        for worker, text in sorted(summaries.items()):
            terminalreporter.write_sep("-", "disttest" + (f" ({worker})" if worker else ""))
            for line in text.splitlines():
                terminalreporter.write_line(line)


def _warn_if_groups_are_ignored(config, items) -> None:
    """pytest-xdist's loadgroup keeps a group on one worker by a suffix it adds
    to each node id; with pytest 9.2 that suffix no longer takes (pytest-xdist
    issue 1386) and the groups are silently ignored. Say so on a worker."""
    if not (hasattr(config, "workerinput") and config.getvalue("loadgroup")):
        return
    grouped = [item for item in items if item.get_closest_marker("xdist_group")]
    if grouped and not any("@" in item.nodeid for item in grouped):
        import warnings

        warnings.warn(pytest.PytestWarning(
            "disttest: pytest-xdist ignores xdist_group with this pytest (its loadgroup "
            "cannot mark the tests' ids), so classes that share a cluster may run on "
            "several workers, each starting its own clusters"))


def _xdist_group(cls: type, requirement) -> str:
    """The same name for classes that can share a cluster (equal compatibility
    keys), in every worker; a fresh-cluster class shares with nobody."""
    import hashlib

    if requirement is None:  # a bad declaration: the class reports it wherever it runs
        return "disttest"
    key = repr(requirement.key)
    if requirement.fresh:
        key += f"{cls.__module__}.{cls.__qualname__}"
    return "disttest-" + hashlib.sha1(key.encode()).hexdigest()[:10]


def _modules_with_module_fixtures(items) -> set[str]:
    """Modules with pytest's xunit module fixtures (``setup_module``,
    ``teardown_module``): the plan keeps each whole, so they run once.
    (unittest's ``setUpModule`` the planner knows itself.)"""
    modules: set[str] = set()
    for item in items:
        cls, module = getattr(item, "cls", None), getattr(item, "module", None)
        if cls is not None and module is not None and (
                hasattr(module, "setup_module") or hasattr(module, "teardown_module")):
            modules.add(cls.__module__)
    return modules
