"""Functions the startfail sample calls on nodes (importable, stdlib only)."""
from disttest import this_node


def node_name():
    return this_node.name
