"""LogTailer: node log lines as events while they are written (--cluster-debug).

One thread polls the log files of every cluster of a pool a few times a
second and emits a ``node_log`` event per complete line.
"""
from __future__ import annotations

import threading


class LogTailer:
    def __init__(self, pool, interval: float = 0.1) -> None:
        self.pool = pool
        self.interval = interval
        self.offsets: dict[str, int] = {}
        self._lock = threading.Lock()  # one reader at a time: offsets move once per line
        self._stop = threading.Event()
        # Lines written before an event are emitted before it (see EventBus.add_flusher).
        pool.events.add_flusher(self.poll, emits=("node_log",))
        self._thread = threading.Thread(target=self._run, name="disttest-logtail", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self, entries=None) -> None:
        """Emit the complete lines written since the last poll (of ``entries``, or all)."""
        with self._lock:
            for entry in list(self.pool.entries if entries is None else entries):
                for node in list(entry.nodes):
                    self._read(entry.id, node)

    def _read(self, cluster_id: str, node) -> None:
        path = str(node.log_path)
        offset = self.offsets.get(path, 0)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]
        if not complete:
            return
        self.offsets[path] = offset + len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            self.pool.events.emit("node_log", cluster=cluster_id, node=node.name,
                                  index=node.index, line=line)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.poll()  # the last lines before the nodes stop
