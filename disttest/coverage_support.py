"""Coverage of node code, on the controller: the adapter to coverage.py.

A run is measured when coverage.py has started measuring this process
(``coverage run -m disttest ...``, ``pytest --cov``, or a ``Coverage`` object
started by hand). Nothing here imports coverage: it is looked up in
``sys.modules``, so an unmeasured run never loads it and neither do its nodes.

Measured runs give each local node the controller's configuration and a data
file of its own, ``<data_file>.<host>.disttest-<controller pid>.<cluster>.<node>.<token>``:
parallel data files that ``coverage combine`` merges, and that the
controller combines into its own data as soon as it has stopped a cluster
(nodes of clusters kept for later runs write theirs when they end).
Simulated nodes are threads of the controller, measured with it; nodes on
SSH hosts are not measured (a warning says so).
"""
from __future__ import annotations

import os
import sys


def _current():
    """The started Coverage object measuring this process, or None."""
    coverage = sys.modules.get("coverage")
    if coverage is None:
        return None
    try:
        return coverage.Coverage.current()
    except Exception:  # a coverage too old to know, or half imported
        return None


def _data_file(cov) -> str:
    # Where the controller's data goes: coverage fixed it (absolute) when it
    # started, relative to the directory it started in, which may not be ours.
    data = getattr(cov, "_data", None)
    base = getattr(data, "base_filename", None)
    return base() if base is not None else os.path.abspath(cov.config.data_file)


def _marker() -> str:
    return f"disttest-{os.getpid()}"


def node_settings(cluster_id: str, node: str) -> dict | None:
    """What a local node's bootstrap carries to measure itself, or None if the
    run is not measured. Plain data only (the bootstrap is marshalled)."""
    cov = _current()
    if cov is None:
        return None
    serialize = getattr(cov.config, "serialize", None)
    if serialize is not None:  # coverage >= 7.10: the whole configuration, exactly
        config, options = ":data:" + serialize(), {}
    else:  # older: the configuration file, and what the command line may have set
        config = cov.config.config_file or True
        options = {"branch": bool(cov.config.branch),
                   "source": list(cov.config.source) if cov.config.source else None,
                   "include": list(cov.config.run_include) or None,
                   "omit": list(cov.config.run_omit) or None}
    import secrets
    import socket

    suffix = (f"{socket.gethostname()}.{_marker()}.{cluster_id}.{node}."
              f"{secrets.token_hex(3)}")
    return {"config": config, "options": options, "data_file": _data_file(cov),
            "suffix": suffix}


def measured() -> bool:
    """True when this run is measured by coverage.py."""
    return _current() is not None


def combine_node_data(cluster_id: str) -> int:
    """Merge the data files that the nodes of ``cluster_id`` (started by this
    controller, now stopped) wrote into the controller's own data; the number
    of files merged."""
    cov = _current()
    if cov is None:
        return 0
    import glob

    pattern = f"{glob.escape(_data_file(cov))}.*.{_marker()}.{glob.escape(cluster_id)}.*"
    paths = sorted(glob.glob(pattern))
    if not paths:
        return 0
    import contextlib
    import io

    try:
        # coverage reports "Combined N files" under `coverage run`: not our output.
        with contextlib.redirect_stderr(io.StringIO()):
            cov.combine(data_paths=paths, keep=False)
    except Exception as exc:  # the files stay where they are: coverage combine merges them
        sys.stderr.write(f"disttest: could not combine the coverage data of cluster "
                         f"{cluster_id}'s nodes ({exc}); run: coverage combine\n")
        return 0
    return len(paths)


def is_coverage_handler(handler) -> bool:
    """True for coverage.py's own SIGTERM handler (it saves, then ends the process)."""
    owner = getattr(handler, "__self__", None)
    return type(owner).__module__.startswith("coverage")
