"""pytest: do not collect the sample projects.

Each is a project of its own, run by the end-to-end tests from a copy of its
directory; collected from here, its ``tests`` package would clash with the
repository's.
"""
collect_ignore_glob = ["*"]
