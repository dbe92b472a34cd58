"""What each test saw, one JSON line per test in ``$SAMPLE_LOG`` (when set)."""
import json
import os


def record(test, **seen):
    path = os.environ.get("SAMPLE_LOG")
    if not path:
        return
    cluster = getattr(test, "cluster", None)
    entry = {"id": test.id(), "cluster": getattr(cluster, "id", None),
             "nodes": len(cluster.nodes) if cluster is not None else None, **seen}
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def mark(text):
    path = os.environ.get("SAMPLE_MARKERS")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")
