"""Command line: the test run (``python -m disttest [unittest args]``) and subcommands.

``python -m disttest config`` prints the effective configuration,
``python -m disttest preflight`` checks the machine and
``python -m disttest cluster ...`` manages kept clusters; every other first
word is handed to the unittest-compatible test program.
"""
from __future__ import annotations

import argparse
import sys

from disttest.errors import DisttestError

SUBCOMMANDS = ("config", "preflight", "cluster")


def _config_command(argv: list[str]) -> int:
    from disttest.config import format_config, load_config

    parser = argparse.ArgumentParser(prog="python -m disttest config",
                                     description="Print every effective setting and its source.")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    ci = parser.add_mutually_exclusive_group()
    ci.add_argument("--ci", dest="ci", action="store_const", const=True,
                    help="show the settings a run in CI mode would use")
    ci.add_argument("--no-ci", dest="ci", action="store_const", const=False,
                    help="show the settings a run outside CI mode would use")
    args = parser.parse_args(argv)
    print(format_config(load_config(ci=args.ci), as_json=args.json))
    return 0


def _preflight_command(argv: list[str]) -> int:
    from disttest.preflight import main as preflight

    return preflight(argv)


def _cluster_command(argv: list[str]) -> int:
    from disttest.cli_cluster import main as cluster

    return cluster(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and argv[1] in SUBCOMMANDS:
        try:
            return {"config": _config_command, "preflight": _preflight_command,
                    "cluster": _cluster_command}[argv[1]](argv[2:])
        except DisttestError as error:
            sys.stderr.write(f"disttest: error: {error.diagnosis.render()}\n")
            return 2
    from disttest.program import DistributedTestProgram

    DistributedTestProgram(module=None, argv=argv)
    return 0


def console_main() -> None:
    try:
        sys.exit(main())
    except BrokenPipeError:
        # The reader went away (``... | head``): not an error of ours to show.
        # Whatever is still buffered for stdout or stderr goes nowhere, so that
        # flushing at exit cannot fail again (which would exit 120).
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass
        sys.exit(1)
