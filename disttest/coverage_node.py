"""Coverage of node code, on the node.

When the controller is measured by coverage.py, its bootstrap carries the
same configuration (``boot["coverage"]``) and the agent calls :func:`start`
before it serves anything, so every line the node runs is measured. This
module imports nothing outside the standard library until :func:`start`
runs: an unmeasured node never loads coverage.

The data is saved into its own parallel data file (``<data_file>.<suffix>``,
the suffix chosen by the controller so it can combine exactly its nodes'
files) whenever the node ends through the agent, and whenever the controller
asks (``coverage_save``) before it kills, pauses or restarts the node.
"""
from __future__ import annotations

import signal

_coverage = None  # the node's started Coverage object


def start(settings: dict) -> None:
    """Start measuring this node with the controller's configuration."""
    global _coverage
    import coverage

    cov = coverage.Coverage.current()
    if cov is None:  # not already started by coverage's own subprocess support
        cov = coverage.Coverage(config_file=settings["config"], data_suffix=settings["suffix"],
                                auto_data=True, **settings.get("options", {}))
        cov.set_option("run:data_file", settings["data_file"])
        # A node with no measured line is normal (a node that only served pings).
        cov.set_option("run:disable_warnings", ["no-data-collected", "module-not-imported"])
        cov.start()
    _coverage = cov
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _save_and_die)


def measured() -> bool:
    return _coverage is not None


def save() -> bool:
    """Write what was measured so far; True when this node is measured."""
    if _coverage is None:
        return False
    try:
        _coverage.save()
    except Exception as exc:  # a node must end even when its data cannot be written
        import sys

        sys.stderr.write(f"[disttest.agent] could not save coverage data: {exc}\n")
    return True


def _save_and_die(signum, frame) -> None:
    # SIGTERM's default action ends the process without atexit: save first,
    # then end by the same signal, so the exit status is unchanged.
    save()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
