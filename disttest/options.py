"""What ``python -m disttest`` adds to unittest's options: their values for a
run (``RunOptions``) and, for those the pytest plugin offers too, their help
texts and choices.

It imports nothing: every pytest run loads the plugin, and the plugin this.
"""
from __future__ import annotations

# What happens to a class whose cluster cannot start (the ``fallback`` setting).
FALLBACKS = ("skip", "reduce", "simulate", "fail")

# The options both command lines have: option -> its help text.
HELP = {
    "--cluster-size": "give every cluster test N nodes, whatever its class asks for",
    "--simulate": "run every cluster on simulated nodes (threads, not processes)",
    "--keep-cluster": "leave the clusters running for the next run to reuse (each ends after "
                      "keep_clusters_ttl idle seconds; 600 when that is 0)",
    "--cluster-debug": "show every cluster operation, node call and node log line "
                       "as it happens",
    "--fallback": "what happens to a class whose cluster cannot start after its retries "
                  "(default: skip on a developer machine, fail in CI)",
}


class RunOptions:
    """What ``python -m disttest`` adds to unittest's options (keyword arguments)."""

    only: list[str] = []
    exclude: list[str] = []
    no_distributed = force_cluster = cluster_debug = simulate = False
    keep_cluster = strict_cleanup = False
    catch_break = False  # -c: the first Ctrl-C lets the running test finish
    cluster_size: int | None = None
    fallback: str | None = None
    json_report: str | None = None
    junit_xml: str | None = None
    html_report: str | None = None
    shard: tuple[int, int] | None = None
    jobs: int | str = 1  # workers (-j N), or "auto"

    def __init__(self, **options) -> None:
        for name, value in options.items():
            if not hasattr(RunOptions, name) or name.startswith("_"):
                raise TypeError(f"RunOptions got an unknown option {name!r}")
            setattr(self, name, value)
        self.only = list(self.only)
        self.exclude = list(self.exclude)

    def __repr__(self) -> str:
        return f"RunOptions({vars(self)!r})"
