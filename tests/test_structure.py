"""The shape of the package: no module uses another's private members, no
import cycles (lazy imports count), pool state declared in one place.

The checks read disttest/'s source with ``ast``; each is first shown to
catch a planted example, so a check that silently stops seeing anything
fails too.
"""
from __future__ import annotations

import ast
import unittest
from pathlib import Path

import disttest
from disttest.clusters.entry import Entry
from disttest.requirements import Requirement

PACKAGE = Path(disttest.__file__).resolve().parent

# Private attributes of other libraries' objects, used because nothing public
# does the job: unittest's test method name, subtest description and the
# suite's hook that drops a finished test; its subtest class (a -j controller's
# stand-in for a worker's subtest must be one: the text result formats subtests by
# that class); coverage.py's data object (its data file's name; get_data() would
# flush).
UNITTEST_ATTRIBUTES = {"_testMethodName", "_subDescription", "_removeTestAtIndex", "_SubTest",
                       "_data"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_accesses(source: str, module: str) -> list[str]:
    """Uses in ``source`` (the module ``module``) of private members it does not define.

    Flagged: ``x._name`` where ``x`` is not ``self``/``cls``/``super()`` or a
    module from outside disttest, and ``_name`` is defined nowhere in this
    module; ``getattr``/``hasattr``/``setattr`` with such a literal name; and
    ``from disttest... import _name``. (A same-named private member defined in
    this module hides an access to another's: the check is a tripwire, not a
    type checker.)
    """
    tree = ast.parse(source)
    defined, foreign_modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            defined.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, ast.Import):
            foreign_modules.update((a.asname or a.name).split(".")[0] for a in node.names
                                   if not a.name.startswith("disttest"))
        elif isinstance(node, ast.ImportFrom) and not node.level and not (
                node.module or "").startswith("disttest"):
            foreign_modules.update(a.asname or a.name for a in node.names)
    found = []
    for node in ast.walk(tree):
        where = f"{module}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                "disttest")):
            found += [f"{where}: from {node.module} import {a.name}"
                      for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            root = owner
            while isinstance(root, ast.Attribute):  # unittest.case._SubTest: unittest's
                root = root.value
            if isinstance(root, ast.Name) and root.id in foreign_modules and root is not owner:
                continue
            if (isinstance(owner, ast.Name) and owner.id in {"self", "cls"} | foreign_modules
                    or isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super"
                    or node.attr in defined or node.attr in UNITTEST_ATTRIBUTES):
                continue
            found.append(f"{where}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                "getattr", "hasattr", "setattr") and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                and _private(node.args[1].value) and node.args[1].value not in defined
                and node.args[1].value not in UNITTEST_ATTRIBUTES):
            found.append(f"{where}: {ast.unparse(node)}")
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the disttest modules it imports anywhere (top level or inside functions)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                deps.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                            for a in node.names)
        # The package itself is only a lazy facade: importing it is no dependency.
        graph[name] = {d for d in deps if d in modules and d not in (name, root.name)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


class PrivateAccessTests(unittest.TestCase):

    def test_the_check_sees_each_kind_of_private_access(self):
        planted = ("import os\nfrom disttest.clusters import node\n"
                   "from disttest.clusters.launcher import _tail\n"
                   "class A:\n    def f(self, pool):\n        self._mine = 1\n"
                   "        os._exit(0)\n        os.path._x\n        return pool._start(), self._mine, "
                   "getattr(pool, '_kept', None), node._lost, super()._x\n")
        self.assertEqual(sorted(private_accesses(planted, "m.py")), [
            "m.py:3: from disttest.clusters.launcher import _tail",
            "m.py:9: getattr(pool, '_kept', None)", "m.py:9: node._lost", "m.py:9: pool._start"])

    def test_no_module_uses_another_modules_private_members(self):
        found = []
        for path in sorted(PACKAGE.rglob("*.py")):
            found += private_accesses(path.read_text(),
                                      path.relative_to(PACKAGE.parent).as_posix())
        self.assertEqual(found, [], "use (or add) a public method of the module that owns it")


class ImportCycleTests(unittest.TestCase):

    def test_the_check_finds_a_cycle_through_a_lazy_import(self):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "pkg"
            root.mkdir()
            (root / "__init__.py").write_text("")
            (root / "a.py").write_text("from pkg import b\n")
            (root / "b.py").write_text("def f():\n    from . import a\n")
            (root / "c.py").write_text("import pkg.a\n")
            self.assertEqual(cycles(import_graph(root)), [["pkg.a", "pkg.b"]])

    def test_disttest_has_no_import_cycle(self):
        graph = import_graph(PACKAGE)
        self.assertIn("disttest.clusters.entry", graph["disttest.clusters.kept"])
        self.assertEqual(cycles(graph), [])


# The layers of docs/design-notes.md, lowest first: a module may import its
# own layer and the layers below it, never one above. The node side imports
# nothing else of disttest (it runs in every node process, stdlib only).
LAYERS = [
    ("node side", {"agent", "agent_codec", "agent_template", "agent_kept", "agent_reset",
                   "agent_spawn", "agent_imports", "this_node", "coverage_node",
                   "containment", "clusters.protocol", "clusters.lockfiles", "errors"}),
    ("base", {"events", "resources", "environment", "config", "requirements", "hosts",
              "settings", "options", "statefiles", "statedir", "durations", "coverage_support", "history", "history.*"}),
    ("clusters", {"clusters", "clusters.*"}),
    ("session", {"session", "fallback", "helpers", "watchdog"}),
    ("reports", {"report", "report.*"}),
    ("unittest", {"case", "decorators", "loader", "planner", "result", "runner", "program",
                  "interrupts", "sharding", "parallel", "parallel.*"}),
    ("tools", {"cli", "cli_cluster", "preflight", "__main__", "tooling", "pytest_plugin"}),
]


def layer_of(module: str) -> int | None:
    """The index in LAYERS of ``module`` (a dotted name below disttest), or None."""
    for index, (_, members) in enumerate(LAYERS):
        if module in members:
            return index
    for index, (_, members) in enumerate(LAYERS):
        if any(m.endswith(".*") and module.startswith(m[:-1]) for m in members):
            return index
    return None


def layer_violations(graph: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """(modules in no layer, imports that point up the layers)."""
    unplaced, upward = [], []
    for module, imports in sorted(graph.items()):
        name = module.partition(".")[2]
        if not name:
            continue  # the package's facade loads anything lazily
        own = layer_of(name)
        if own is None:
            unplaced.append(name)
            continue
        for target in sorted(imports):
            other = layer_of(target.partition(".")[2])
            if other is not None and (other > own or own == 0 and other != 0):
                upward.append(f"{name} ({LAYERS[own][0]}) imports {target.partition('.')[2]} "
                              f"({LAYERS[other][0]})")
    return unplaced, upward


class LayerTests(unittest.TestCase):

    def test_the_check_sees_upward_imports_and_unplaced_modules(self):
        planted = {"disttest.clusters.pool": {"disttest.runner", "disttest.errors"},
                   "disttest.agent": {"disttest.events"},
                   "disttest.runner": {"disttest.clusters.pool"},
                   "disttest.newthing": set()}
        self.assertEqual(layer_violations(planted), (["newthing"], [
            "agent (node side) imports events (base)",
            "clusters.pool (clusters) imports runner (unittest)"]))

    def test_every_import_points_down_the_layers(self):
        unplaced, upward = layer_violations(import_graph(PACKAGE))
        self.assertEqual(unplaced, [], "give each new module a layer in LAYERS "
                         "(and in the map of docs/design-notes.md)")
        self.assertEqual(upward, [])


class EntryTests(unittest.TestCase):

    def test_every_field_is_declared(self):
        entry = Entry("c1", Requirement(2), [], Path("."), [5000, 5001], False)
        for name in Entry.__slots__:
            getattr(entry, name)  # every declared field is set by __init__
        self.assertEqual((entry.pinned, entry.adopted, entry.kept_name), (False, False, None))
        with self.assertRaises(AttributeError):
            entry.kept = True  # nothing can be attached from outside
        self.assertFalse(hasattr(entry, "__dict__"))


if __name__ == "__main__":
    unittest.main()
