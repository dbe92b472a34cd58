"""Background work on a node (node side, stdlib only): imported on the first ``spawn``.

Each spawned function runs in a thread of its own, named for it. Its record
keeps the result or the error description until the controller reads it
(``spawn_status``); a failure nobody read is handed over once, with the test
that was running (``spawn_failures``). A reset takes every record and waits
for the threads within its timeout.
"""
from __future__ import annotations

import threading

from disttest import this_node
from disttest.clusters import protocol


class SpawnedWork:
    """The spawned work of one node."""

    def __init__(self, context, simulated: bool, describe, log) -> None:
        self.context, self.simulated = context, simulated
        self.describe, self.log = describe, log  # the agent's error description and log
        self.records: dict[int, dict] = {}
        self.ids = iter(range(1, 1 << 62))
        self.lock = threading.Lock()

    def start(self, fn, args, kwargs) -> int:
        spawn_id = next(self.ids)
        record = {"fn": getattr(fn, "__qualname__", repr(fn)), "done": False,
                  "error": None, "result": None, "seen": False}

        def run():
            if self.simulated:
                this_node.install_context(self.context, thread_local=True)
            try:
                record["result"] = fn(*args, **kwargs)
            except BaseException as exc:
                record["error"] = error = self.describe(exc)
                # In the log when it happens, next to what the node printed then.
                self.log(f"spawned {record['fn']} (job {spawn_id}) failed:\n"
                         + (error[2] or f"{error[0]}: {error[1]}").rstrip())
            finally:
                record["done"] = True

        record["thread"] = threading.Thread(target=run, name=f"disttest-spawn-{spawn_id} "
                                            f"({record['fn']})",
                                            daemon=True)
        with self.lock:
            self.records[spawn_id] = record
        record["thread"].start()
        return spawn_id

    def status(self, spawn_id, wait, reads_error) -> tuple:
        record = self.records.get(spawn_id)
        if record is None:
            return (protocol.SPAWN_GONE, None)
        if wait:
            record["thread"].join(wait)
        if not record["done"]:
            return (protocol.SPAWN_RUNNING, None)
        if record["error"] is not None:
            record["seen"] = record["seen"] or reads_error  # read: not reported again
            return (protocol.SPAWN_ERROR, record["error"])
        return (protocol.SPAWN_DONE, record["result"])

    def failures(self) -> list:
        failures = []
        with self.lock:
            for spawn_id, record in self.records.items():
                if record["done"] and record["error"] is not None and not record["seen"]:
                    record["seen"] = True
                    failures.append((spawn_id, record["fn"], record["error"]))
        return failures

    def running(self) -> int:
        return sum(1 for r in list(self.records.values()) if not r["done"])

    def take_all(self) -> list:
        """Every record, forgotten here (a reset): later status asks answer SPAWN_GONE."""
        with self.lock:
            records, self.records = list(self.records.values()), {}
        return records
