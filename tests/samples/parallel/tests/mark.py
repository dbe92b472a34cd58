"""Markers of what ran where: ``<what> <test or fixture> <pid> [<cluster id>]``
appended to ``$SAMPLE_MARKERS``; ``$SAMPLE_SLEEP`` seconds per test (default 0)."""
import os
import time


def mark(what, name, cluster=None):
    path = os.environ.get("SAMPLE_MARKERS")
    if path:
        with open(path, "a") as f:
            f.write(f"{what} {name} {os.getpid()}" + (f" {cluster.id}" if cluster else "")
                    + "\n")


def nap():
    time.sleep(float(os.environ.get("SAMPLE_SLEEP", "0")))
