"""Functions the mixed sample's tests call on nodes (importable, stdlib only)."""
import os

from disttest import this_node


def node_name():
    return this_node.name


def getenv(name):
    return os.environ.get(name)
