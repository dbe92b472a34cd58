"""Functions the crash sample calls on nodes (importable, stdlib only)."""
import os

from disttest import this_node


def node_name():
    return this_node.name


def say(text):
    print(text, flush=True)


def die(last_words, status):
    """Print, then end the node process at once, the way a crash does."""
    print(last_words, flush=True)
    os._exit(status)
