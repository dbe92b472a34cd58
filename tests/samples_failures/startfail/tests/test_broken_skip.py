"""The same broken nodes, in classes that choose their own fallback."""
import tests.test_broken as broken  # a module import: the loader must not collect Broken here


class BrokenSkips(broken.Broken):
    fallback = "skip"  # whatever the run's fallback is


class BrokenAgain(broken.Broken):
    """Same requirement as Broken: the run must not try (or explain) it twice."""
