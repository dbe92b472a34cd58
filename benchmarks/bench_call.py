"""Call round trip: ``node.call`` against a raw ``multiprocessing.connection`` call.

Interleaved batches (after one warm-up batch each):

* disttest — ``node.call(noop)`` on a live node: the function travels by
  reference, runs on the node, and its result comes back over the node's
  authenticated connection.
* raw — ``Client(address, authkey).send(("noop", (), {}))`` then ``recv()``
  against a child process whose ``Listener(("127.0.0.1", 0), authkey=...)``
  connection echoes every ``recv()`` back with ``send()``: the floor for an
  authenticated pickle round trip between two Python processes.

The target is disttest ≤ 1.5× raw. It also measures what authenticating
every frame (``protocol.Channel``: a MAC bound to the session, direction and
sequence number) adds to one ``node.call`` round trip -- the request's MAC
made and checked, the reply's MAC made and checked, on this call's real
frames -- and gives its share of the ``node.call`` time (target ≤ 10 %).
It also prints the CPU time each side (this process, the node) spends per
``node.call``, which other processes on the machine disturb less than the
wall time. For information it also times
``node.ping()``, ``node.submit(noop).result()`` and ``cluster.call_all(noop)``
on 3 nodes. Run from the repository root:

    python benchmarks/bench_call.py [--rounds 10] [--calls 2000]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import _util

TARGET = 1.5
MAC_TARGET = 0.10


def noop():
    """The benchmarked remote function; nodes import it from this file."""
    return None


RAW_SERVER = r"""
import sys
from multiprocessing.connection import Listener
key = bytes.fromhex(sys.stdin.readline().strip())
with Listener(("127.0.0.1", 0), authkey=key) as listener:
    sys.stdout.write("%d\n" % listener.address[1])
    sys.stdout.flush()
    with listener.accept() as conn:
        while True:
            try:
                conn.send(conn.recv())
            except EOFError:
                break
"""


def start_raw_server():
    key = os.urandom(32)
    proc = subprocess.Popen([sys.executable, "-c", RAW_SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    proc.stdin.write(key.hex().encode() + b"\n")
    proc.stdin.flush()
    port = int(proc.stdout.readline())
    from multiprocessing.connection import Client
    return proc, Client(("127.0.0.1", port), authkey=key)


def batch_raw(conn, calls: int) -> float:
    message = ("noop", (), {})
    send, recv = conn.send, conn.recv
    started = time.perf_counter()
    for _ in range(calls):
        send(message)
        recv()
    return (time.perf_counter() - started) / calls


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_call(node, calls: int, cpu: dict) -> float:
    """Per-call wall time; appends each side's CPU time per call to ``cpu``
    (the node's is counted in clock ticks: summed over the batches, it is exact)."""
    call = node.call
    node_before, own_before = process_cpu(node.pid), time.process_time()
    started = time.perf_counter()
    for _ in range(calls):
        call(noop)
    elapsed = (time.perf_counter() - started) / calls
    own, node_after = time.process_time() - own_before, process_cpu(node.pid)
    cpu["controller"].append(own / calls)
    if node_before is not None and node_after is not None:
        cpu["node"].append((node_after - node_before) / calls)
    return elapsed


def batch_ping(node, calls: int) -> float:
    ping = node.ping
    started = time.perf_counter()
    for _ in range(calls):
        ping()
    return (time.perf_counter() - started) / calls


def batch_submit(node, calls: int) -> float:
    submit = node.submit
    started = time.perf_counter()
    for _ in range(calls):
        submit(noop).result()
    return (time.perf_counter() - started) / calls


def batch_call_all(cluster, calls: int) -> float:
    call_all = cluster.call_all
    started = time.perf_counter()
    for _ in range(calls):
        call_all(noop)
    return (time.perf_counter() - started) / calls


def batch_mac(calls: int) -> float:
    """The MAC work of one node.call round trip, on both sides, in one process."""
    import socket

    from disttest.clusters import protocol, serialize

    request = serialize.dumps(protocol.request("call", noop, (), {}))
    reply = serialize.dumps((protocol.OK, None))
    a, b = socket.socketpair()
    client = protocol.Channel(a, b"k" * 32, client=True)
    server = protocol.Channel(b, b"k" * 32, client=False)
    compare = protocol.compare_digest
    tag = protocol.Channel._tag
    started = time.perf_counter()
    for number in range(calls):
        sent = tag(client, b"c", number, request)                  # controller sends
        compare(sent, tag(server, b"c", number, request))          # node checks
        answer = tag(server, b"s", number, reply)                  # node replies
        compare(answer, tag(client, b"s", number, reply))          # controller checks
    elapsed = (time.perf_counter() - started) / calls
    a.close()
    b.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds (default 10)")
    parser.add_argument("--calls", type=int, default=2000,
                        help="calls per batch for call/raw (default 2000); "
                             "a quarter as many for ping/submit/call_all")
    args = parser.parse_args()
    small = max(1, args.calls // 4)

    _util.setup("disttest benchmark: call round trip")
    from disttest.clusters.pool import ClusterPool
    from disttest.config import load_config
    from disttest.requirements import Requirement

    pool = ClusterPool(load_config())
    cluster = pool.acquire(Requirement(3, fresh=True))
    node = cluster.nodes[0]
    proc, conn = start_raw_server()
    assert node.call(noop) is None and cluster.call_all(noop) == [None] * 3

    cpu: dict = {"controller": [], "node": []}
    sides = {
        "disttest node.call": lambda: batch_call(node, args.calls, cpu),
        "raw mp.connection": lambda: batch_raw(conn, args.calls),
    }
    info = {
        "node.ping()": lambda: batch_ping(node, small),
        "node.submit(noop).result()": lambda: batch_submit(node, small),
        "cluster.call_all(noop), 3 nodes": lambda: batch_call_all(cluster, small),
        "frame MACs of one node.call": lambda: batch_mac(args.calls),
    }
    results = {name: [] for name in [*sides, *info]}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            order = list(sides) if rnd % 2 else list(reversed(sides))
            for name in order + list(info):
                per_call = {**sides, **info}[name]()
                if rnd:
                    results[name].append(per_call)
    finally:
        conn.close()
        proc.wait(10)
        pool.release(cluster)
        pool.shutdown()
    total = time.perf_counter() - started

    us = lambda seconds: f"{seconds * 1e6:.1f}"  # noqa: E731
    raw = _util.median(results["raw mp.connection"])
    rows = []
    for name, values in results.items():
        m = _util.median(values)
        rows.append([name, us(m), us(min(values)), f"{m / raw:.2f}×"])
    ratio = _util.median(results["disttest node.call"]) / raw
    print(f"Round trip of a no-op call, median per-call time of {args.rounds} interleaved "
          f"batches (+1 warm-up); {args.calls} calls per batch for the first two rows, "
          f"{small} for the others, microseconds:")
    print(_util.table(["", "median µs", "best batch µs", "vs raw"], rows))
    print()
    print(f"node.call / raw = {ratio:.2f}×: target {_util.verdict(ratio, TARGET)}")
    share = (_util.median(results["frame MACs of one node.call"])
             / _util.median(results["disttest node.call"]))
    met = "met" if share <= MAC_TARGET else "NOT MET"
    print(f"frame MACs / node.call = {share:.1%}: target {met} (≤ {MAC_TARGET:.0%})")
    # CPU time is less sensitive than wall time to other processes on the machine.
    warm = slice(1, None)  # the warm-up round's figures are left out
    sides_cpu = ", ".join(f"{side} {us(sum(values[warm]) / len(values[warm]))} µs"
                          for side, values in cpu.items() if values[warm])
    print(f"CPU time per node.call (mean of the measured batches): {sides_cpu}")
    print(f"benchmark ran {total:.1f} s; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPU(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
