"""Record the pid of every disttest node agent that starts (end-to-end tests).

On ``PYTHONPATH`` with ``SAMPLE_SPY_LOG`` set, each node's pid is appended to
that file: the tests count the nodes started and check that every one of
them has ended. Linux only (/proc).

A spawned node is a Python process whose command line runs the agent: it is
recorded here, at interpreter start. A node template (its environment has
``DISTTEST_NODE_TEMPLATE``, disttest.clusters.template.TEMPLATE_MARK) runs
the same command line but is no node: its pid goes to
``$SAMPLE_SPY_LOG.templates`` instead, and the nodes it forks, which never
start an interpreter, are recorded as they are forked -- only the template's
own children, not processes that node code forks in turn. A node that needs
an interpreter of its own (``PYTHON*`` in ``node_env``, a network namespace)
is a template child that runs the node's command: recorded when forked, so
not again when its interpreter starts.
"""
import os

_log = os.environ.get("SAMPLE_SPY_LOG")


def _forked_by_a_template():
    try:
        with open(f"/proc/{os.getppid()}/environ", "rb") as f:
            return b"\0DISTTEST_NODE_TEMPLATE=" in b"\0" + f.read()
    except OSError:
        return False


def _record(path, pid):
    with open(path, "a") as f:  # one short append: atomic between processes
        f.write(f"{pid}\n")


if _log:
    try:
        with open("/proc/self/cmdline", "rb") as _f:
            _cmdline = _f.read()
    except OSError:
        _cmdline = b""
    if b"disttest.agent" in _cmdline:
        if os.environ.get("DISTTEST_NODE_TEMPLATE"):
            _template = os.getpid()
            _record(_log + ".templates", _template)

            def _forked_node(log=_log, template=_template):
                if os.getppid() == template:
                    _record(log, os.getpid())

            os.register_at_fork(after_in_child=_forked_node)
        elif not _forked_by_a_template():
            _record(_log, os.getpid())
