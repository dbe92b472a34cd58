"""A module that cannot be imported: reported as a failed import, like unittest."""
import module_that_does_not_exist_xyz  # noqa: F401


class NeverLoaded:
    pass
