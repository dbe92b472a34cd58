"""Write docs/api.md from the docstrings of disttest's public API.

    python docs/gen_api.py          # rewrite docs/api.md
    python docs/gen_api.py --check  # exit 1 if docs/api.md is out of date

Everything comes from ``disttest.__all__`` and the objects it names, so the
reference cannot drift from the code.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import disttest  # noqa: E402

OUT = ROOT / "docs" / "api.md"

SECTIONS = [
    ("Test cases", ["DistributedTestCase", "cluster_size", "tag", "fresh_cluster",
                    "distributed", "requires_real_cluster", "wait_until"]),
    ("Clusters and nodes", ["Cluster", "Node", "Spawned", "start_cluster", "cluster",
                            "current_cluster", "ClusterTestHelper"]),
    ("Running", ["main", "DistributedTestLoader", "DistributedTestRunner",
                 "DistributedTestResult"]),
    ("Errors", ["DisttestError", "Diagnosis", "ConfigError", "ClusterStartError",
                "NodeCrashedError", "RemoteError", "PortRangeExhausted", "CallTimeoutError",
                "SerializationError", "NetworkModeError"]),
    ("Histories and linearizability", ["History", "check_linearizable", "assert_linearizable",
                                       "CheckResult", "Model", "Register", "CASRegister",
                                       "KVMap", "SetModel", "Counter", "FIFOQueue",
                                       "NonLinearizableError", "HistoryFormatError",
                                       "Nemesis"]),
]

# Members of classes worth listing (public, documented here on purpose).
MEMBERS = {
    "DistributedTestCase": ["setUpCluster", "tearDownCluster", "setUpNode", "tearDownNode",
                            "nodes", "cluster_nodes",
                            "with_cluster_size", "wait_until", "assertClusterHealthy",
                            "history", "assertLinearizable"],
    "History": ["op", "fault", "heal", "merge", "events", "save", "load"],
    "CheckResult": ["valid", "failures", "seed"],
    "Model": ["init", "step", "partition"],
    "Nemesis": ["start", "stop", "schedule"],
    "Cluster": ["node", "view", "call_all", "healthy", "wait_healthy", "info", "partition",
                "isolate", "cut", "delay", "heal", "faults", "stop"],
    "Node": ["call", "submit", "spawn", "ping", "logs", "port", "address", "kill", "terminate",
             "pause", "resume", "restart", "pid", "alive", "dir"],
    "ClusterTestHelper": ["start_test_cluster", "stop_test_cluster", "stop_all_clusters",
                          "cluster_nodes", "wait_for_cluster"],
    "Spawned": ["running", "result"],
    "ClusterPool": ["acquire", "release", "stop", "shutdown", "keep"],
}


def _doc(obj) -> str:
    return inspect.cleandoc(inspect.getdoc(obj) or "(no description)")


def _annotation(value) -> str:
    return value if isinstance(value, str) else getattr(value, "__name__", repr(value))


def _signature(obj) -> str:
    """The signature as written in the source (annotations are strings there)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    parts, star_done = [], False
    for p in sig.parameters.values():
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
        star_done = star_done or p.kind in (p.VAR_POSITIONAL, p.KEYWORD_ONLY)
        text = prefix + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        parts.append(text)
    result = f"({', '.join(parts)})"
    if sig.return_annotation is not sig.empty:
        result += f" -> {_annotation(sig.return_annotation)}"
    return result


def _entry(name: str, obj) -> list[str]:
    kind = "class" if inspect.isclass(obj) else "function"
    lines = [f"### `{name}{_signature(obj) if kind == 'function' else ''}`", ""]
    if kind == "class":
        # Bases worth naming: public ones, and the standard library's (not the
        # private classes a public one is assembled from).
        public = set(disttest.__all__) | set(importlib.import_module("disttest.tooling").__all__)
        bases = ", ".join(b.__qualname__ for b in obj.__bases__ if b is not object and (
            not b.__module__.startswith("disttest") or b.__name__ in public))
        lines[0] = f"### class `{name}`" + (f" ({bases})" if bases else "")
    lines += [_doc(obj), ""]
    for member in MEMBERS.get(name, []):
        attr = inspect.getattr_static(obj, member)
        target = attr.fget if isinstance(attr, property) else getattr(obj, member)
        sig = "" if isinstance(attr, property) else _signature(target)
        lines += [f"- **`{member}{sig}`**" + (" (property)" if isinstance(attr, property) else "")
                  + f": {_doc(target).splitlines()[0]}"]
    if MEMBERS.get(name):
        lines.append("")
    return lines


def render() -> str:
    lines = ["# API reference", "",
             "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.",
             "Every name below is importable from `disttest`, except those of the last",
             "section, which are in `disttest.tooling`. Code that runs on nodes uses",
             "`disttest.this_node`.", ""]
    listed = set()
    for title, names in SECTIONS:
        lines += [f"## {title}", ""]
        for name in names:
            lines += _entry(name, getattr(disttest, name))
            listed.add(name)
    from disttest import this_node

    lines += ["## On a node: `disttest.this_node`", "", _doc(this_node), ""]
    for name in ("port", "address", "peers", "on_reset", "inside_node"):
        fn = getattr(this_node, name)
        lines += [f"- **`{name}{_signature(fn)}`**: {_doc(fn).splitlines()[0]}"]
    lines += ["- **`name`, `index`, `host`, `cluster_id`, `state`, `stopping`, `dir`**: the "
              "node's identity, a dict cleared on reset, an Event set while it resets, and "
              "its own working directory.", ""]
    from disttest import tooling

    lines += ["## For tool authors: `disttest.tooling`", "", _doc(tooling), ""]
    for name in tooling.__all__:
        lines += _entry(name, getattr(tooling, name))
    missing = sorted(set(disttest.__all__) - listed - {"this_node"})
    if missing:
        raise SystemExit(f"gen_api.py: public names without a section: {', '.join(missing)}")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print("docs/api.md is out of date: run python docs/gen_api.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
