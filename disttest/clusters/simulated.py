"""Simulated nodes: the node agent run as threads of the controller.

When real processes cannot be had (the ``simulate`` fallback, or
``--simulate``), each node is a :class:`disttest.agent.Agent` serving on a
loopback socket from a thread of this process, with its own ``this_node``
context. The Node and Cluster API is unchanged. The nearest honest meaning
of each operation:

* ``kill()``/``terminate()``: the node stops answering (calls raise
  ``NodeCrashedError``) and its ``on_reset`` callbacks run so its services
  stop; ``restart()`` brings a fresh agent with empty state.
* ``pause()``/``resume()``: the node holds requests until resumed.
* ``node_env`` cannot differ per thread: it is not applied (a warning says so).
* Output of code on a simulated node goes to the test process's streams; a
  node's log holds only what the agent itself records.
"""
from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path


class SimulatedProcess:
    """Stands in for a node process; same surface as launcher.Process."""

    pid = None

    def __init__(self, agent, log_path: Path) -> None:
        self.agent = agent
        self.log_path = log_path
        self.control_port = agent.listener.getsockname()[1]
        self._returncode: int | None = None

    def alive(self) -> bool:
        return self._returncode is None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self._returncode

    def signal(self, signum: int) -> None:
        if signum == signal.SIGSTOP:
            self.agent.gate.clear()
        elif signum == signal.SIGCONT:
            self.agent.gate.set()
        elif signum in (signal.SIGKILL, signal.SIGTERM):
            self._end(-signum)

    def left_behind(self) -> list[int]:
        """Nothing is killed for it by a template."""
        return []

    def close_stdin(self) -> None:
        self._end(0)

    def stop(self, timeout: float) -> None:
        self._end(0)

    def close_pipes(self) -> None:
        pass

    def _end(self, code: int) -> None:
        if self._returncode is None:
            self._returncode = code
            # Closing a socket does not wake a thread blocked in accept() on it (the
            # agent's serving thread would live on, listening); shutting it down does.
            try:
                self.agent.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.agent.stop_simulated()


class SimulatedLauncher:
    simulated = True

    def start(self, boots: list[dict], log_paths: list[Path], timeout: float):
        from disttest.agent import Agent

        processes = []
        for boot, log_path in zip(boots, log_paths):
            agent = Agent(boot, simulated=True)
            with open(log_path, "a") as log:
                log.write(f"[disttest] simulated node {boot['name']} of cluster "
                          f"{boot['cluster_id']} (a thread of the test process)\n")
            threading.Thread(target=agent.serve_forever, name=f"disttest-sim-{boot['name']}",
                             daemon=True).start()
            processes.append(SimulatedProcess(agent, log_path))
        return processes
