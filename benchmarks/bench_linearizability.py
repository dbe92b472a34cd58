"""How fast the linearizability checker is, and what recording an operation costs.

Histories of a key-value map (``KVMap``) are made by simulated concurrent
clients acting on a real dict: each operation is invoked, applied at one
instant, then completed, so the history is linearizable by construction.
The main table has no operation of unknown outcome, like Porcupine's
key-value benchmark histories; a second table leaves 2% of the operations
"info" (they may have taken effect at any later time), which is what costs
most when a history is not linearizable. The "not
linearizable" variant turns a few reads into stale reads (a value that was
overwritten before the read began). Sizes: 1k, 10k and 100k operations,
10 to 1,000 keys, 5 to 50 clients.

Targets: 10k operations checked in under 2 s, 100k in under 30 s.

    python benchmarks/bench_linearizability.py          # ~1-2 min
    python benchmarks/bench_linearizability.py --quick  # 1k and 10k only
"""
from __future__ import annotations

import random
import sys
import threading
import time

from _util import setup, table


def kv_history(n_ops: int, keys: int, clients: int, seed: int, info_rate: float = 0.0):
    """Events of a linearizable key-value history (see the module docstring)."""
    rng = random.Random(seed)
    data: dict = {}
    events: list[tuple] = []
    pending: dict[int, list] = {}
    clock = 0.0
    started = next_id = 0
    while started < n_ops or pending:
        client = rng.randrange(clients)
        clock += rng.random()
        op = pending.get(client)
        if op is None:
            if started >= n_ops:
                continue
            key = rng.randrange(keys)
            f = "write" if rng.random() < 0.5 else "read"
            value = next_id if f == "write" else None
            op = pending[client] = [next_id, f, key, value, False, None]
            events.append(("invoke", next_id, client, f, key, value, clock))
            next_id += 1
            started += 1
        elif not op[4]:
            op[4] = True
            if op[1] == "write":
                data[op[2]] = op[3]
            else:
                op[5] = data.get(op[2])
        else:
            kind = "info" if rng.random() < info_rate else "ok"
            events.append((kind, op[0], client, op[1], op[2], op[5], clock))
            del pending[client]
    return events


def make_stale(events: list[tuple], count: int, seed: int) -> list[tuple]:
    """Change ``count`` reads to return a value overwritten before they began."""
    rng = random.Random(seed)
    calls = {e[1]: e for e in events if e[0] == "invoke"}
    done = {e[1]: e for e in events if e[0] == "ok"}
    writes_by_key: dict = {}
    for op_id, end in sorted(done.items(), key=lambda item: item[1][6]):
        call = calls[op_id]
        if call[3] == "write":
            writes_by_key.setdefault(call[4], []).append((call[6], end[6], call[5]))
    changed: dict[int, object] = {}
    reads = [i for i in done if calls[i][3] == "read"]
    rng.shuffle(reads)
    for op_id in reads:
        call = calls[op_id]
        older = [w for w in writes_by_key.get(call[4], ()) if w[1] < call[6]]
        # two writes that both completed before the read began, in real-time order
        for w1, w2 in zip(older, older[1:]):
            if w1[1] < w2[0] and w2 != older[-1] or (w1[1] < w2[0] and w2 == older[-1]):
                changed[op_id] = w1[2]
                break
        if len(changed) >= count:
            break
    return [e[:5] + (changed[e[1]],) + e[6:] if e[0] == "ok" and e[1] in changed else e
            for e in events]


def check(events, History, KVMap, check_linearizable):
    history = History(events)
    started = time.perf_counter()
    result = check_linearizable(history, KVMap(), timeout=120)
    return time.perf_counter() - started, result


def recorder_cost(History, n: int = 200_000) -> list[list[str]]:
    rows = []
    history = History()
    started = time.perf_counter()
    for i in range(n):
        pass
    empty = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for i in range(n):
        with history.op("c", "write", i, key=i % 10) as op:
            op.ok()
    one = (time.perf_counter() - started) / n - empty
    rows.append(["1 thread", f"{one * 1e6:.2f} µs"])
    history = History()

    def client(name):
        for i in range(n // 4):
            with history.op(name, "write", i, key=i % 10) as op:
                op.ok()

    threads = [threading.Thread(target=client, args=(f"c{t}",)) for t in range(4)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    four = (time.perf_counter() - started) / n
    rows.append(["4 threads (per op, all threads)", f"{four * 1e6:.2f} µs"])
    return rows


def main() -> int:
    setup("Linearizability checker and recorder")
    from disttest.history.checker import check_linearizable
    from disttest.history.models import KVMap
    from disttest.history.recorder import History

    quick = "--quick" in sys.argv
    print("Recording one operation (history.op(...) as a context manager, then op.ok()):")
    print(table(["", "cost per operation"], recorder_cost(History)))
    print("(for scale: one node.call round trip is about 64 µs, docs/performance.md)\n")

    cases = [(1_000, 10, 5), (1_000, 100, 50), (10_000, 10, 5), (10_000, 100, 50),
             (10_000, 1_000, 50)]
    if not quick:
        cases += [(100_000, 10, 5), (100_000, 100, 50), (100_000, 1_000, 50)]
    worst = {1_000: 0.0, 10_000: 0.0, 100_000: 0.0}
    for info_rate in (0.0, 0.02):
        rows = []
        print(f"Key-value histories, {info_rate:.0%} of the operations of unknown outcome:")
        for n_ops, keys, clients in cases:
            events = kv_history(n_ops, keys, clients, n_ops + keys + clients, info_rate)
            for label, variant in (("yes", events), ("no", make_stale(events, 3, seed=1))):
                elapsed, result = check(variant, History, KVMap, check_linearizable)
                expected = "ok" if label == "yes" else "illegal"
                worst[n_ops] = max(worst[n_ops], elapsed)
                rows.append([f"{n_ops:,}", f"{keys:,}", str(clients), label, result.result
                             + ("" if result.result == expected else " (WRONG)"),
                             f"{elapsed:.2f} s", f"{elapsed / n_ops * 1e6:.1f} µs"])
        print(table(["operations", "keys", "clients", "linearizable", "verdict", "check time",
                     "per op"], rows))
        print(flush=True)
    print()
    for n_ops, target in ((10_000, 2.0), (100_000, 30.0)):
        if worst.get(n_ops):
            state = "met" if worst[n_ops] < target else "NOT MET"
            print(f"{n_ops:,} operations: slowest {worst[n_ops]:.2f} s, target < {target:g} s: "
                  f"{state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
