"""``python -m disttest cluster start|status|logs|stop|clean``: kept clusters by hand.

``cluster start`` + an ordinary run is the manual workflow: the run finds the
started cluster in the registry, verifies and resets it, and uses it.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from disttest import resources
from disttest.clusters import kept
from disttest.clusters.registry import Registry, is_agent, owner_alive, pid_alive, same_process
from disttest.errors import ConfigError

_CLUSTER_DIR = re.compile(r"^disttest-(w\d+-)?c\d+-[0-9a-f]{4}-\w+$")  # w<N>-: a -j worker's


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _memory(pids) -> str:
    from disttest.environment import format_bytes
    from disttest.resources import usage

    total = sum((usage(pid) or (0, 0))[0] for pid in pids if pid)
    return format_bytes(total)


def cmd_start(args, config) -> int:
    from disttest.clusters.pool import ClusterPool
    from disttest.requirements import Requirement, check_ports, check_size

    size = check_size(config.default_cluster_size if args.size is None else args.size, "command line --size",
                      "--size", config.max_cluster_size)
    try:
        ports = check_ports(tuple(args.ports.split(",")) if args.ports else ("app",),
                            "command line --ports")
    except ConfigError:  # check_ports speaks of a class's tuple; say it for the option
        allowed = "comma-separated port names, each a valid identifier, without repeats"
        raise ConfigError(f"command line --ports: {args.ports!r} is not allowed; --ports must "
                          f"be {allowed}", steps=["for example: --ports app,admin"],
                          source="command line --ports", key="--ports", value=args.ports,
                          allowed=allowed) from None
    if args.name and _registry(config).find(args.name):
        sys.stderr.write(f"disttest: error: a kept cluster named {args.name!r} exists already "
                         f"(stop it first: python -m disttest cluster stop {args.name})\n")
        return 2
    # --ttl on the command line wins over the configuration, as everywhere.
    ttl = args.ttl if args.ttl is not None else (config.keep_clusters_ttl or 3600.0)
    if ttl <= 0:
        sys.stderr.write(f"disttest: error: --ttl {ttl:g} is not allowed: a kept cluster "
                         "needs a positive number of seconds\n")
        return 2
    pool = ClusterPool(config)
    pool.events.subscribe(lambda e: e.kind == "warning" and sys.stderr.write(
        f"disttest: {e.message}\n"))
    try:
        # Always a new cluster: acquire() would adopt a cluster kept earlier
        # (another name's) and rename it.
        entry = pool.start_new(Requirement(size, ports))
        kept_ids = pool.keep(ttl, name=args.name, pinned=True)
    finally:
        pool.shutdown()
    if entry.id not in kept_ids:
        sys.stderr.write("disttest: error: the cluster started but could not be kept\n")
        return 1
    name = args.name or entry.id
    named = f"{name} ({entry.id})" if args.name else name
    print(f"cluster {named}: {size} node(s), kept until idle for {ttl:g}s")
    for node in entry.nodes:
        ports_text = ", ".join(f"{k}={v}" for k, v in node.ports.items())
        print(f"  {node.name}  pid {node.pid}  {node.host}  {ports_text}")
    print("the next run of this project uses it; stop it with: "
          f"python -m disttest cluster stop {name}")
    return 0


def _registry(config) -> Registry:
    """The state directory's registry; a record set aside is reported on stderr."""
    return Registry(config.state_path(),
                    note=lambda text: sys.stderr.write(f"disttest: {text}\n"))


def cmd_status(args, config) -> int:
    registry = _registry(config)
    rows = []
    for path, record in registry.records():
        pids = [n["pid"] for n in record["nodes"]]
        alive = sum(same_process(n["pid"], n.get("start_time")) for n in record["nodes"])
        owner = record.get("owner_pid")
        state = f"in use by pid {owner}" if owner and pid_alive(owner) else "idle"
        ports = ",".join(str(p) for n in record["nodes"] for p in n["ports"].values())
        rows.append(f"  {record['name']:<14} {len(pids):>4} {_age(time.time() - record['created']):>6} "
                    f"{_age(time.time() - record['last_used']):>6} {alive:>5}/{len(pids):<3} "
                    f"{_memory(pids):>9}  {state}; ports {ports}")
    orphans = registry.unrecorded_nodes()
    if not rows and not orphans:
        print("no kept clusters (start one: python -m disttest cluster start --size 3)")
        return 0
    if rows:
        print(f"  {'name':<14} {'size':>4} {'age':>6} {'idle':>6} {'alive':>9} {'memory':>9}")
        print("\n".join(rows))
    for pid in orphans:
        print(f"  kept node process {pid} is alive but no record names it "
              "(remove it: python -m disttest cluster clean)")
    return 0


def _find(config, name: str):
    found = _registry(config).find(name)
    if found is None:
        sys.stderr.write(f"disttest: error: no kept cluster named {name!r} "
                         "(see: python -m disttest cluster status)\n")
    return found


def cmd_logs(args, config) -> int:
    found = _find(config, args.name)
    if found is None:
        return 2
    _path, record = found
    nodes = [n for n in record["nodes"] if args.node is None or n["index"] == args.node]
    if not nodes:
        indexes = ", ".join(str(n["index"]) for n in record["nodes"])
        sys.stderr.write(f"disttest: error: cluster {args.name} has no node {args.node} "
                         f"(--node takes a node index: {indexes})\n")
        return 2
    offsets = {}
    for node in nodes:
        text = Path(node["log_path"]).read_text(errors="replace") if Path(node["log_path"]).exists() else ""
        offsets[node["log_path"]] = len(text.encode())
        for line in text.splitlines():
            print(f"[{node['name']}] {line}")
    while args.follow:  # until Ctrl-C, like tail -f
        try:
            time.sleep(0.25)
        except KeyboardInterrupt:
            return 0
        for node in nodes:
            path = node["log_path"]
            try:
                with open(path, "rb") as f:
                    f.seek(offsets[path])
                    chunk = f.read()
            except OSError:
                continue
            offsets[path] += len(chunk)
            for line in chunk.decode(errors="replace").splitlines():
                print(f"[{node['name']}] {line}", flush=True)
    return 0


def cmd_stop(args, config) -> int:
    registry = _registry(config)
    if args.all:
        targets = list(registry.records())
    elif args.name:
        found = _find(config, args.name)
        if found is None:
            return 2
        targets = [found]
    else:
        sys.stderr.write("disttest: error: cluster stop needs the name of a kept cluster, "
                         "or --all (see: python -m disttest cluster status)\n")
        return 2
    for path, record in targets:
        stopped = kept.stop_record(record, config.cleanup_timeout)
        path.unlink(missing_ok=True)
        print(f"stopped cluster {record['name']} ({len(stopped)} node(s))")
    return 0


def _dead_runs_directory(path: str) -> bool:
    """Is ``path`` inside a cluster directory (under tmp) whose run has ended?"""
    tmp = Path(tempfile.gettempdir())
    candidate = Path(path)
    for parent in candidate.parents:
        if parent.parent == tmp and _CLUSTER_DIR.match(parent.name):
            try:
                if parent.stat().st_uid != os.getuid():
                    return False
            except OSError:
                return False
            return not owner_alive(parent)
    return False


def _kill_tree(pid: int) -> list[int]:
    """SIGKILL a node process proved ours, and everything below it first: a
    node (or a node template) is the subreaper of what its code started, so
    its tree holds all of it; killed after them, it leaves none to init."""
    below: list[int] = []
    for _ in range(3):  # what a dying child's children were re-parented to meanwhile
        found = [p for p in resources.process_tree(pid) if p not in below]
        if not found:
            break
        resources.kill_all(found)
        below += found
    resources.kill_all([pid])
    return below


def cmd_clean(args, config) -> int:
    """Stop whatever no live run owns; remove stale records, directories and locks."""
    import psutil

    from disttest.clusters.ports import default_lock_dir

    registry = _registry(config)
    removed = []
    known_pids = set()
    with registry.locked():  # no run adopts a cluster while we decide
        for path, record in registry.records():
            owner = record.get("owner_pid")
            if owner and pid_alive(owner) and owner != os.getpid():
                known_pids.update(n["pid"] for n in record["nodes"])
                continue
            stopped = kept.stop_record(record, config.cleanup_timeout)
            path.unlink(missing_ok=True)
            removed.append(f"cluster {record['name']} ({len(stopped)} live node(s) stopped)")
        for pid in registry.unrecorded_nodes():
            # Ours (it holds this private registry open) and found by nothing else.
            resources.kill_all([pid, *resources.process_tree(pid)])
            removed.append(f"kept node process {pid} that no record names")
    # Node processes whose controller is gone and that no record names.
    me = os.getuid()
    open_logs = set()
    others = unproven = 0
    agents = []
    for proc in psutil.process_iter(["pid", "ppid", "uids", "cmdline"]):
        try:
            if proc.info["uids"].real == me and "disttest.agent" in " ".join(proc.info["cmdline"] or []):
                agents.append((proc, [f.path for f in proc.open_files()]))
        except (psutil.Error, OSError):
            continue
    # A forked node's parent is its node template (which holds its nodes' logs):
    # once the template is stopped here as part of an ended run, its nodes are
    # orphans too, so passes repeat while they stop something.
    stopped: set[int] = set()
    while agents:
        waiting = []
        for proc, files in agents:
            try:
                ppid = proc.info["ppid"]
                parent_alive = ppid not in stopped and pid_alive(ppid) and ppid != 1
                if parent_alive and proc.info["pid"] not in known_pids:
                    waiting.append((proc, files))
                    continue
                # A node holding port locks itself was kept (detached); one that no
                # record here names belongs to another state directory's registry
                # and ends after its idle TTL: not ours to stop.
                kept_elsewhere = not parent_alive and proc.info["pid"] not in known_pids and any(
                    Path(path).parent.name.startswith("disttest-port-locks") for path in files)
                if proc.info["pid"] in known_pids or kept_elsewhere:
                    open_logs.update(files)
                    others += kept_elsewhere
                    continue
                # Proof that it is a node of a run that has ended: it writes its log
                # into a cluster directory whose owner (pid and start time) is dead.
                # A command line proves nothing: anyone can name a process so.
                if not any(_dead_runs_directory(path) for path in files):
                    open_logs.update(files)
                    unproven += 1
                    continue
                if is_agent(proc.info["pid"]):
                    below = _kill_tree(proc.info["pid"])
                    stopped.add(proc.info["pid"])
                    removed.append(f"orphaned node process {proc.info['pid']}" + (
                        f" and {len(below)} process(es) it started" if below else ""))
            except (psutil.Error, OSError):
                continue
        if len(waiting) == len(agents):
            for _proc, files in waiting:  # their parents run: not ours to judge
                open_logs.update(files)
            break
        agents = waiting
    # Temporary directories of clusters no live node writes to (named by the
    # pool: disttest-<cluster id>-<random>, the id [w<N>-]c<N>-<4 hex digits>).
    for directory in Path(tempfile.gettempdir()).glob("disttest-*-*"):
        if not _CLUSTER_DIR.match(directory.name):
            continue  # someone else's directory that merely looks alike
        if (directory.is_dir() and not owner_alive(directory)
                and not any(p.startswith(str(directory) + os.sep) for p in open_logs)):
            try:
                if directory.stat().st_uid == me:
                    import shutil

                    shutil.rmtree(directory, ignore_errors=True)
                    removed.append(f"temporary directory {directory}")
            except OSError:
                pass
    # Lock files nobody holds.
    from disttest.clusters.ports import PortAllocator

    for lock in default_lock_dir().glob("*.lock"):
        try:
            port = int(lock.stem)
        except ValueError:
            continue
        if PortAllocator((port, port)).remove_if_free(port):
            removed.append(f"port lock {port}")
    from disttest.clusters.netns import cleanup_leftovers, unavailable

    if unavailable() is None:
        removed += [f"network namespace leftover {name}" for name in cleanup_leftovers()]
    for line in removed:
        print(f"removed {line}")
    if others:
        print(f"left {others} node(s) kept by another state directory running "
              "(they end after their idle TTL)")
    if unproven:
        print(f"left {unproven} node process(es) without a parent running: none writes "
              "into the directory of a run that has ended, so none is proved to be ours "
              "to stop")
    print(f"cluster clean: {len(removed)} item(s) removed")
    return 0


def main(argv: list[str]) -> int:
    from disttest.config import load_config

    parser = argparse.ArgumentParser(prog="python -m disttest cluster",
                                     description="Manage clusters kept between runs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = sub.add_parser("start", help="start a cluster and keep it for later runs",
                           description="Start a cluster and keep it: the next run of this "
                                       "project uses it instead of starting one.")
    start.add_argument("--size", type=int, metavar="N",
                       help="number of nodes (default: default_cluster_size)")
    start.add_argument("--name", help="a name to refer to it by (default: its cluster id)")
    start.add_argument("--ports", metavar="NAMES",
                       help="comma-separated port names for every node (default: app)")
    start.add_argument("--ttl", type=float, default=None, metavar="SECONDS",
                       help="seconds of idleness before it ends itself "
                            "(default: keep_clusters_ttl, else 3600)")
    sub.add_parser("status", help="list every kept cluster and its nodes",
                   description="List every kept cluster: size, age, idle time, live nodes, "
                               "memory and ports.")
    logs = sub.add_parser("logs", help="print a kept cluster's node logs",
                          description="Print the logs of a kept cluster's nodes, each line "
                                      "prefixed with its node.")
    logs.add_argument("name", help="the cluster's name or id (see: cluster status)")
    logs.add_argument("--node", type=int, metavar="N",
                      help="only the node with this index (0 is node-0)")
    logs.add_argument("--follow", "-f", action="store_true",
                      help="keep printing new lines until Ctrl-C")
    stop = sub.add_parser("stop", help="stop a kept cluster",
                          description="Stop a kept cluster (or every one with --all).")
    stop.add_argument("name", nargs="?", help="the cluster's name or id (see: cluster status)")
    stop.add_argument("--all", action="store_true", help="stop every kept cluster")
    sub.add_parser("clean", help="stop everything no live run owns and remove leftovers",
                   description="Stop kept clusters and node processes that no live run owns, "
                               "and remove leftover temporary directories and port locks.")
    args = parser.parse_args(argv)
    config = load_config()
    return {"start": cmd_start, "status": cmd_status, "logs": cmd_logs, "stop": cmd_stop,
            "clean": cmd_clean}[args.command](args, config)
