"""Code that only ever runs on nodes: the test module imports it but calls
nothing of it itself. Each body line says how its node ends."""


def on_node(x):
    doubled = x * 2  # node: called
    return doubled + 1  # node: called


def before_kill():
    return "about to be killed"  # node: killed


def before_terminate():
    return "about to be terminated"  # node: terminated


def before_pause():
    return "about to be paused"  # node: paused, then killed


def spawned_forever():
    from disttest import this_node

    rounds = 0
    while not this_node.stopping.wait(0.01):  # node: loop
        rounds += 1  # node: spawned
        this_node.state["rounds"] = rounds  # node: spawned


def never_called():
    return "nobody calls this"  # nowhere
