"""Stopping clusters, and proving afterwards that nothing of ours is left.

Stopping asks every node at once (its stdin is closed; a kept node is told to
shut down so it removes its own port locks), then waits for each; children of
nodes that outlive them are leaks, reported and killed. After a run,
``verify_cleanup`` checks that every process the pool started and did not
keep is gone, every port lock released and every temporary directory removed.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from disttest import coverage_support, resources
from disttest.clusters.parallel import in_parallel
from disttest.errors import DisttestError


def stop_entries(pool, entries: list) -> None:
    """Stop ``entries`` of ``pool`` (see the module docstring)."""
    for entry in entries:
        pool.events.emit("cluster_stopping", cluster=entry.id)
    # Only processes of this machine: simulated and SSH nodes have none here.
    children = {entry.id: [pid for n in entry.nodes if n.alive and n.local_pid
                           for pid in resources.process_tree(n.local_pid)] for entry in entries}
    for entry in entries:
        for node in entry.nodes:
            node.record_metrics()
    for entry in entries:  # preload = "auto": what the nodes imported
        pool.launchers[False].learn_from(entry)
    for entry in entries:  # ask every node at once, then wait for each
        if entry.adopted:
            in_parallel(_shutdown_kept, entry.nodes)
        for node in entry.nodes:
            node.drop_connections()
            if node.process is not None:
                node.resume()
                node.process.close_stdin()
    for entry in entries:
        started = time.perf_counter()
        for node in entry.nodes:  # every node was asked already: they end together
            node.stop_process(pool.config.cleanup_timeout)
        coverage_support.combine_node_data(entry.id)  # when the run is measured
        # Still running, or killed by the template the nodes were made by.
        killed = {pid for node in entry.nodes if node.process is not None
                  for pid in node.process.left_behind()}
        leftovers = sorted(set(resources.alive(children[entry.id]))
                           | (killed & set(children[entry.id])))
        if leftovers:
            resources.kill_all(leftovers)
            pool.events.emit("leak", cluster=entry.id, what="process", pids=leftovers,
                             detail=f"{len(leftovers)} child process(es) of nodes outlived "
                                    "them and were killed")
        if entry.faults is not None:
            entry.faults.close()
        if pool.log_tailer is not None:  # the last lines, before the logs go
            pool.log_tailer.poll([entry])
        pool.allocator.release(entry.ports)
        saved = save_logs(pool, entry)
        shutil.rmtree(entry.tmpdir, ignore_errors=True)
        if entry.adopted:
            pool.registry.remove(entry.id)
        if entry in pool.entries:
            pool.entries.remove(entry)
        pool.events.emit("cluster_stopped", cluster=entry.id, logs=saved,
                         nodes=[_node_summary(n) for n in entry.nodes],
                         seconds=time.perf_counter() - started,
                         uptime=time.time() - entry.created)


def save_logs(pool, entry) -> str | None:
    target = getattr(pool.config, "save_cluster_logs", None)
    if not target:
        return None
    dest = Path(target) / pool.run_id / entry.id
    dest.mkdir(parents=True, exist_ok=True)
    for log in entry.tmpdir.glob("*.log"):
        shutil.copy2(log, dest / log.name)
    pool.saved_logs.append(dest)
    return str(dest)


def verify_cleanup(pool) -> list[dict]:
    """After shutdown: what this pool started and did not keep must be gone."""
    leaks = []
    alive = resources.alive(pool.started_pids - pool.kept_pids)
    if alive:
        resources.kill_all(alive)
        leaks.append({"what": "process", "pids": alive,
                      "detail": f"{len(alive)} node process(es) outlived the run"})
    if pool.allocator.held:
        leaks.append({"what": "port", "ports": sorted(pool.allocator.held),
                      "detail": f"{len(pool.allocator.held)} port lock(s) still held"})
        pool.allocator.release_all()
    left = [str(d) for d in pool.tmpdirs if d.exists() and d not in pool.kept_dirs]
    if left:
        for d in left:
            shutil.rmtree(d, ignore_errors=True)
        leaks.append({"what": "tmpdir", "paths": left,
                      "detail": f"{len(left)} temporary directory(ies) left behind"})
    for leak in leaks:
        pool.events.emit("leak", cluster="-", **leak)
    return leaks


def _node_summary(node) -> dict:
    """A stopped node for the reports: its pids, peak memory and CPU time."""
    return {"name": node.name, "pids": [m["pid"] for m in node.metrics] or [node.pid],
            "restarts": node.incarnation,  # over the node's life, every holder
            "peak_rss_bytes": max((m["peak_rss_bytes"] for m in node.metrics), default=None),
            "cpu_s": round(sum(m["cpu_s"] for m in node.metrics), 4) if node.metrics else None}


def _shutdown_kept(node) -> None:
    # A kept node holds its own port locks; asked to shut down, it removes them.
    try:
        node.shutdown()
    except DisttestError:
        pass
