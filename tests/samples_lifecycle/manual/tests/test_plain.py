import os
import unittest


class Plain(unittest.TestCase):

    def test_plain(self):
        path = os.environ.get("SAMPLE_MARKERS")
        if path:
            with open(path, "a") as f:
                f.write("plain\n")
