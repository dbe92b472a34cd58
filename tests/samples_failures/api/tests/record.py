"""What each test saw, one JSON line per test in ``$SAMPLE_LOG`` (when set)."""
import json
import os


def record(test, **seen):
    path = os.environ.get("SAMPLE_LOG")
    if not path:
        return
    cluster = type(test).cluster
    entry = {"id": test.id(), "cluster": cluster.id, "simulated": cluster.simulated,
             "nodes": len(cluster.nodes), **seen}
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
