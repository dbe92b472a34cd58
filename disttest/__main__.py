"""``python -m disttest``: run tests like ``python -m unittest``, with clusters."""
import sys

if sys.argv[0].endswith("__main__.py"):
    # --help and usage errors read "python -m disttest", as unittest does for itself.
    sys.argv[0] = "python -m disttest"

from disttest.cli import console_main  # noqa: E402

console_main()
