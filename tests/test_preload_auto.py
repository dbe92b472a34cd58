"""``preload = "auto"``: the node template preloads what nodes imported in earlier runs.

End to end: a sample project runs ``python -m disttest`` three times. Its
nodes import two libraries from outside the project: one writes its pid to a
marker file when imported, one starts a thread. The first run preloads
nothing and learns both; the second preloads the marker library in the
template (the marker holds the template's pid, the nodes' parent, and no
node's) and drops the thread-starting one with one note; the third preloads
without a note. Then the settings and attribute errors, the history's
validation (a bad one is set aside, never a crash), what a node reports, and
learned modules that do not import or start a thread being dropped by a pool.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

from disttest import durations
from disttest.clusters import template
from disttest.clusters.preload_auto import leaves
from disttest.config import load_config
from disttest.errors import ConfigError
from disttest.requirements import Requirement, requirement_of
from tests import support
from tests.template_nodefuncs import loaded, parent

def setUpModule():
    if not template.supported():
        raise unittest.SkipTest("template nodes need fork() and SCM_RIGHTS")


def tearDownModule():
    support.shutdown_and_check()


MARKER_LIB = textwrap.dedent("""
    import os

    with open(os.environ["PRELOAD_MARKER"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    """)

THREAD_LIB = textwrap.dedent("""
    import threading

    _stop = threading.Event()
    threading.Thread(target=_stop.wait, name="lib-poller", daemon=True).start()
    """)

SAMPLE = textwrap.dedent("""
    import os
    import disttest


    def use_libraries():
        import preload_marker_lib, preload_thread_lib  # noqa: F401
        return os.getpid(), os.getppid()


    class Auto(disttest.DistributedTestCase):
        cluster_size = 2

        def test_nodes_import_libraries(self):
            with open(os.environ["NODE_PARENTS"], "a") as f:
                for pid, ppid in self.cluster.call_all(use_libraries):
                    f.write(f"{pid} {ppid} {os.getpid()}\\n")
    """)


class EndToEnd(unittest.TestCase):
    """Three runs of one project with ``preload = "auto"``."""

    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory(prefix="disttest-preload-auto-")
        cls.addClassCleanup(tmp.cleanup)
        cls.root = Path(tmp.name)
        project, lib = cls.root / "project", cls.root / "lib"
        project.mkdir()
        lib.mkdir()
        (lib / "preload_marker_lib.py").write_text(MARKER_LIB)
        (lib / "preload_thread_lib.py").write_text(THREAD_LIB)
        (project / "pyproject.toml").write_text(
            '[tool.disttest]\nnode_start = "template"\npreload = "auto"\n')
        (project / "test_sample_auto.py").write_text(SAMPLE)
        cls.runs = [cls.run_once(project, lib, n) for n in range(3)]
        [cls.history] = (cls.root / "state" / "durations").glob("*.json")

    @classmethod
    def run_once(cls, project: Path, lib: Path, n: int) -> dict:
        marker, parents = cls.root / f"marker{n}", cls.root / f"parents{n}"
        result = support.run_python(
            ["-m", "disttest", "-v"], cwd=str(project), timeout=120,
            env={"PYTHONPATH": str(lib), "PRELOAD_MARKER": str(marker),
                 "NODE_PARENTS": str(parents), "DISTTEST_STATE_DIR": str(cls.root / "state")})
        nodes = [tuple(map(int, line.split())) for line in parents.read_text().splitlines()] \
            if parents.exists() else []
        return {"result": result, "output": result.stdout + result.stderr,
                "marker": [int(p) for p in marker.read_text().split()] if marker.exists() else [],
                "nodes": nodes}

    def test_every_run_passes(self):
        for run in self.runs:
            self.assertEqual(run["result"].returncode, 0, run["output"])
            self.assertIn("Ran 1 test", run["output"])
            self.assertEqual(len(run["nodes"]), 2, run["output"])

    def test_the_first_run_preloads_nothing_and_its_nodes_import_the_library(self):
        first = self.runs[0]
        self.assertIn('preloaded 0 module(s) (preload = "auto": nothing learned yet', first["output"])
        self.assertRegex(first["output"], r'this run\'s nodes imported \d+ more module\(s\) to '
                                          r'preload, recorded in ')
        self.assertEqual(sorted(first["marker"]), sorted(pid for pid, _, _ in first["nodes"]))

    def test_what_was_learned_is_in_the_history_for_this_interpreter(self):
        data = json.loads(self.history.read_text())
        self.assertEqual(durations.durations_problem(data), None)
        [entry] = data["preload"].values()
        self.assertIn("preload_marker_lib", entry["modules"])
        self.assertNotIn("preload_thread_lib", entry["modules"])
        self.assertIn("started threads (lib-poller)", entry["refused"]["preload_thread_lib"])
        # Never the project's own code, nor disttest, nor __main__.
        for name in entry["modules"]:
            self.assertFalse(name.startswith(("test_sample_auto", "disttest", "__")), name)

    def test_later_runs_import_the_learned_library_in_the_template_not_in_the_nodes(self):
        for run in self.runs[1:]:
            [template_pid] = {ppid for _, ppid, _ in run["nodes"]}
            [runner_pid] = {runner for _, _, runner in run["nodes"]}
            self.assertNotEqual(template_pid, runner_pid)
            self.assertEqual(run["marker"][-1], template_pid, run["output"])
            for pid, _, _ in run["nodes"]:
                self.assertNotIn(pid, run["marker"])
            self.assertRegex(run["output"], rf"node template \(pid {template_pid}\) preloaded "
                                            r"(\d+) module\(s\), \1 of them learned from earlier "
                                            r'runs \(preload = "auto", ')

    def test_a_module_that_starts_a_thread_is_dropped_once_and_never_falls_back(self):
        second, third = self.runs[1], self.runs[2]
        note = 'preload = "auto": preload_thread_lib is no longer preloaded: preloading ' \
               "preload_thread_lib started threads (lib-poller)"
        self.assertEqual(second["output"].count(note), 1, second["output"])
        self.assertNotIn("no longer preloaded", third["output"])
        for run in self.runs:
            self.assertNotIn("node template refused", run["output"])
        # The third run's template started once: one import of the marker library.
        self.assertEqual(len(third["marker"]), 1)


class Settings(unittest.TestCase):
    """``auto`` in every configuration source, and errors that say what is allowed."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="disttest-preload-config-")
        self.addCleanup(tmp.cleanup)
        self.root = tmp.name

    def load(self, filename: str = "", text: str = "", **variables):
        if filename:
            Path(self.root, filename).write_text(text)
        return load_config(self.root, environ=variables)

    def error(self, filename: str = "", text: str = "", **variables) -> str:
        with self.assertRaises(ConfigError) as caught:
            self.load(filename, text, **variables)
        return str(caught.exception)

    def test_auto_from_every_source(self):
        self.assertEqual(self.load("disttest.toml", 'preload = "auto"\n').preload, ("auto",))
        self.assertEqual(self.load("disttest.toml", 'preload = ["auto", "json"]\n').preload,
                         ("auto", "json"))
        Path(self.root, "disttest.toml").unlink()
        self.assertEqual(self.load("setup.cfg", "[disttest]\npreload = Auto, json\n").preload,
                         ("auto", "json"))
        config = self.load(DISTTEST_PRELOAD="json,AUTO,json")
        self.assertEqual(config.preload, ("json", "auto"))
        self.assertEqual(config.sources["preload"], "environment DISTTEST_PRELOAD")

    def test_bad_values_name_the_key_the_source_and_what_is_allowed(self):
        for filename, text, words in [
                ("disttest.toml", "preload = 5\n", "disttest.toml"),
                ("disttest.toml", 'preload = ["auto", "not a module"]\n', "'not a module' is not"),
                ("setup.cfg", "[disttest]\npreload = auto, 3rd\n", "'3rd' is not a module name")]:
            with self.subTest(text=text):
                message = self.error(filename, text)
                self.assertIn("preload", message)
                self.assertIn(filename, message)
                self.assertIn(words, message)
                self.assertIn('a list of module names and/or "auto"', message)
                Path(self.root, filename).unlink()
        message = self.error(DISTTEST_PRELOAD="auto;json")
        self.assertIn("DISTTEST_PRELOAD", message)
        self.assertIn("'auto;json' is not a module name", message)

    def test_the_class_attribute(self):
        class Auto:
            preload = "auto"

        class Both:
            preload = ("auto", "json")

        self.assertEqual(requirement_of(Auto).preload, ("auto",))
        self.assertEqual(requirement_of(Both).preload, ("auto", "json"))
        for value, words in [("json", "write preload = ('json',) for one module"),
                             (("auto", 5), "a tuple of module names"),
                             (("auto", "no such"), "'no such' is not a module name")]:
            class Declared:
                preload = value

            with self.subTest(value=value), self.assertRaises(ConfigError) as caught:
                requirement_of(Declared)
            self.assertIn("Declared", str(caught.exception))
            self.assertIn(words, str(caught.exception))
            self.assertIn('"auto" among them or alone', str(caught.exception))


class History(unittest.TestCase):
    """The ``preload`` part of the durations history is validated like the rest."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="disttest-preload-history-")
        self.addCleanup(tmp.cleanup)
        self.path = Path(tmp.name, "history.json")

    def test_a_bad_entry_sets_the_file_aside(self):
        for bad, words in [
                ([], "'preload' must map interpreters"),
                ({"py": []}, "must be an object with 'modules' and 'refused'"),
                ({"py": {"modules": ["json"], "extra": 1}}, "must be an object"),
                ({"py": {"modules": "json"}}, "must be a list"),
                ({"py": {"modules": ["json", "../evil"]}}, "holds '../evil'"),
                ({"py": {"refused": {"json": 3}}}, "not a module name with its reason"),
                ({"py": {"modules": ["m%d" % i for i in range(5000)]}}, "at most 4096")]:
            with self.subTest(bad=str(bad)[:40]):
                self.path.write_text(json.dumps({"classes": {"a.B": 1.0}, "preload": bad}))
                notes: list[str] = []
                self.assertEqual(durations.load_durations(self.path, notes.append), {})
                self.assertFalse(self.path.exists())
                self.assertTrue(self.path.with_name("history.json.bad").exists())
                [note] = notes
                self.assertIn(words, note)
                self.assertIn("set aside as history.json.bad", note)

    def test_a_good_entry_is_read(self):
        good = {"preload": {"py": {"modules": ["json", "xml.dom"], "refused": {"x": "why"}}}}
        self.path.write_text(json.dumps(good))
        self.assertEqual(durations.load_durations(self.path), good)

    def test_writers_that_end_together_lose_nothing(self):
        # -j workers and concurrent runs each merge their part into the one file:
        # every addition of every writer is there afterwards.
        writer = textwrap.dedent("""
            import sys, time
            from pathlib import Path
            from disttest.durations import update_durations
            path, me = Path(sys.argv[1]), sys.argv[2]
            while not Path(sys.argv[3]).exists():  # all start writing together
                time.sleep(0.001)
            for n in range(20):
                def change(data, n=n):
                    time.sleep(0.001)  # between the read and the write
                    data.setdefault("classes", {})[f"{me}.C{n}"] = 1.0
                update_durations(path, change)
        """)
        go = self.path.with_name("go")
        procs = [subprocess.Popen([sys.executable, "-c", writer, str(self.path), f"w{i}",
                                   str(go)], cwd=support.REPO, env=support.python_env())
                 for i in range(4)]
        go.touch()
        self.assertEqual([p.wait(60) for p in procs], [0] * 4)
        classes = durations.load_durations(self.path)["classes"]
        self.assertEqual(len(classes), 4 * 20, sorted(classes))

    def test_leaves_keep_the_deepest_names(self):
        self.assertEqual(leaves(["a", "a.b.c", "a.b", "d", "e.f"]), ["a.b.c", "d", "e.f"])


def imports_things():
    import xml.dom.minidom  # noqa: F401  a library: learned

    from tests import template_preload_socket  # noqa: F401  the project's own code: not
    return True


class NodeReport(unittest.TestCase):
    """What a node says it imported: libraries, never the project's code."""

    def test_a_node_reports_libraries_it_imported(self):
        pool = support.make_pool(node_start="spawn")
        self.addCleanup(pool.shutdown)
        [node] = pool.acquire(Requirement(size=1)).nodes
        self.assertNotIn("xml.dom.minidom", node.imports([support.REPO]))
        node.call(imports_things)
        names = node.imports([support.REPO])
        self.assertIn("xml.dom.minidom", names)
        self.assertEqual(names, sorted(names))
        for name in names:
            self.assertFalse(name.startswith(("tests", "disttest", "_", "__main__")), name)
            self.assertNotIn("._", name)
        # Without the project directory, the project's modules count as libraries.
        self.assertIn("tests.template_preload_socket", node.imports([]))


def import_minidom() -> None:
    import xml.dom.minidom  # noqa: F401


class Learning(unittest.TestCase):
    """A pool learns from its nodes when their cluster stops, and only with auto."""

    def test_running_nodes_teach_and_a_paused_one_does_not_stop_them(self):
        with tempfile.TemporaryDirectory(prefix="disttest-preload-learn-") as tmp:
            path = Path(tmp, "history.json")
            pool = support.make_pool(node_start="template", preload=("auto",),
                                     durations_file=str(path))
            learned: list = []
            pool.events.subscribe(lambda e: learned.append(e.data)
                                  if e.kind == "preload_learned" else None)
            try:
                first, second = pool.acquire(Requirement(size=2)).nodes
                first.call(import_minidom)
                second.pause()  # it cannot answer: skipped (asked, it would time out)
            finally:
                pool.shutdown()
            entry = json.loads(path.read_text())["preload"][sys.executable]
            self.assertIn("xml.dom.minidom", entry["modules"])
            self.assertEqual(entry["refused"], {})
            [event] = learned
            self.assertEqual(event["history"], str(path))
            self.assertEqual(event["added"], len(entry["modules"]))

    def test_a_pool_without_auto_writes_nothing(self):
        with tempfile.TemporaryDirectory(prefix="disttest-preload-learn-") as tmp:
            path = Path(tmp, "history.json")
            pool = support.make_pool(node_start="template", preload=("json",),
                                     durations_file=str(path))
            try:
                pool.acquire(Requirement(size=1)).nodes[0].call(import_minidom)
            finally:
                pool.shutdown()
            self.assertFalse(path.exists())


class LearnedButRefused(unittest.TestCase):
    """A pool drops learned modules its template refuses, and says so once each."""

    def test_modules_that_fail_or_start_a_thread_are_dropped(self):
        with tempfile.TemporaryDirectory(prefix="disttest-preload-refused-") as tmp:
            path = Path(tmp, "history.json")
            learned = ["no_such_module_here", "tests.template_preload_thread", "xml.dom.minidom"]
            path.write_text(json.dumps({"preload": {sys.executable: {"modules": learned}}}))
            pool = support.make_pool(node_start="template", preload=("auto",),
                                     durations_file=str(path))
            warnings: list[str] = []
            started: list = []
            pool.events.subscribe(lambda e: warnings.append(e.message)
                                  if e.kind == "warning" else None)
            pool.events.subscribe(lambda e: started.append(e.data)
                                  if e.kind == "template_started" else None)
            try:
                cluster = pool.acquire(Requirement(size=2))
                [template_pid] = {t.popen.pid for t in pool.launchers[False].templates.values()}
                self.assertEqual([n.call(parent) for n in cluster.nodes], [template_pid] * 2)
                self.assertEqual(cluster.nodes[0].call(loaded, "xml.dom.minidom"), True)
            finally:
                pool.shutdown()
            self.assertEqual(len(warnings), 2, warnings)
            self.assertIn('preload = "auto": tests.template_preload_thread is no longer '
                          "preloaded: preloading tests.template_preload_thread started threads",
                          warnings[0])
            self.assertIn('preload = "auto": 1 learned module(s) no longer import and are '
                          "forgotten: no_such_module_here (cannot preload no_such_module_here: "
                          "ModuleNotFoundError", warnings[1])
            self.assertEqual([(s["modules"], s["learned"], s["auto"]) for s in started],
                             [(1, 1, True)])
            entry = json.loads(path.read_text())["preload"][sys.executable]
            # Refused for good: the thread. Forgotten (learned again if imported again):
            # the module that is gone.
            self.assertEqual(list(entry["refused"]), ["tests.template_preload_thread"])
            self.assertIn("xml.dom.minidom", entry["modules"])
            self.assertNotIn("no_such_module_here", entry["modules"])
            self.assertNotIn("tests.template_preload_thread", entry["modules"])

    def test_a_listed_module_that_does_not_import_still_refuses_the_template(self):
        with tempfile.TemporaryDirectory(prefix="disttest-preload-refused-") as tmp:
            path = Path(tmp, "history.json")
            path.write_text(json.dumps({"preload": {sys.executable: {
                "modules": ["xml.dom.minidom"]}}}))
            pool = support.make_pool(node_start="template", preload=("auto", "no_such_module"),
                                     durations_file=str(path))
            warnings: list[str] = []
            pool.events.subscribe(lambda e: warnings.append(e.message)
                                  if e.kind == "warning" else None)
            try:
                [node] = pool.acquire(Requirement(size=1)).nodes
                # Spawned (by a template that preloads nothing, which keeps what it leaves).
                self.assertEqual(node.call(loaded, "xml.dom.minidom"), False)
            finally:
                pool.shutdown()
            self.assertEqual(len(warnings), 1, warnings)
            self.assertIn("node template refused, spawning these nodes instead: cannot preload "
                          "no_such_module: ModuleNotFoundError", warnings[0])


if __name__ == "__main__":
    unittest.main()
