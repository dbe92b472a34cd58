"""Record the pid of every disttest node agent that starts (end-to-end tests).

On ``PYTHONPATH`` with ``SAMPLE_SPY_LOG`` set, each Python process whose command
line runs the agent appends its pid to that file: the tests count the nodes
started and check that every one of them has ended. Linux only (/proc).
"""
import os

_log = os.environ.get("SAMPLE_SPY_LOG")
if _log:
    try:
        with open("/proc/self/cmdline", "rb") as _f:
            _cmdline = _f.read()
    except OSError:
        _cmdline = b""
    if b"disttest.agent" in _cmdline:
        with open(_log, "a") as _f:  # one short append: atomic between processes
            _f.write(f"{os.getpid()}\n")
