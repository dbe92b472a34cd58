"""Record the pid of every disttest node agent that starts (end-to-end tests).

On ``PYTHONPATH`` with ``SAMPLE_SPY_LOG`` set, each node's pid is appended to
that file: the tests count the nodes started and check that every one of
them has ended. Linux only (/proc).

A spawned node is a Python process whose command line runs the agent: it is
recorded here, at interpreter start. A node template (its environment has
``DISTTEST_NODE_TEMPLATE``, disttest.clusters.template_process.TEMPLATE_MARK) runs
the same command line but is no node: its pid goes to
``$SAMPLE_SPY_LOG.templates`` instead, and the nodes it forks, which never
start an interpreter, are recorded as they are forked -- only the template's
own children, not processes that node code forks in turn.

A template child may instead run a command of its own (a node that needs an
interpreter start: ``PYTHON*`` in ``node_env``, a network namespace). Its
``os.exec`` retracts the record of its fork (a line ``-<pid>``): it is
counted when its interpreter starts, if it gets that far.
"""
import os
import sys

_log = os.environ.get("SAMPLE_SPY_LOG")


def _record(path, line):
    with open(path, "a") as f:  # one short append: atomic between processes
        f.write(f"{line}\n")


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

            def _exec(event, args, log=_log, template=_template):
                if event == "os.exec" and os.getppid() == template:
                    _record(log, f"-{os.getpid()}")

            os.register_at_fork(after_in_child=_forked_node)
            sys.addaudithook(_exec)
        else:
            _record(_log, os.getpid())
