"""The nemesis: faults injected into a cluster on a seeded schedule, in the background.

Rationale. Bugs of distributed systems hide in the interleaving of client
operations and faults, so the faults must come at times the test author
did not choose, and a failure must be replayable. The schedule is drawn
from ``random.Random(seed)``: the same seed gives the same sequence of
faults, targets and durations (wall-clock timing still varies with the
machine, so a replay reproduces the faults, not every interleaving). One
fault is in force at a time, so a majority of nodes stays up; faults take
``duty`` of the time. The nemesis acts only through the public fault
methods of ``Cluster`` and ``Node`` and records each fault in the history,
so a failure shows which faults overlapped the bad window.

The seed is the ``seed`` argument, else the ``DISTTEST_SEED`` environment
variable (``python -m disttest --seed N`` sets it), else a fresh random one.
"""
from __future__ import annotations

import os
import random
import sys
import threading
from typing import Any, Callable, Iterator

from disttest.history.recorder import History

SEED_ENV = "DISTTEST_SEED"
PROCESS_FAULTS = ("kill", "pause")
NETWORK_FAULTS = ("partition", "isolate", "delay")
ALL_FAULTS = PROCESS_FAULTS + NETWORK_FAULTS


def resolve_seed(seed: int | None = None) -> int:
    """``seed``, else $DISTTEST_SEED, else a new random seed."""
    if seed is not None:
        return int(seed)
    raw = os.environ.get(SEED_ENV, "").strip()
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"environment {SEED_ENV}={raw!r} is not allowed: the nemesis seed "
                             "is an integer (as printed with a failure)") from None
    return random.SystemRandom().randrange(2 ** 32)


class Nemesis:
    """Injects faults into ``cluster`` from a background thread while the block runs.

    ``faults``: the kinds to draw from, among "kill" (then restart), "pause"
    (then resume), "partition" (two random halves), "isolate" (one node) and
    "delay" (latency with jitter on every link); default: the process faults,
    plus the network faults when the cluster's network can be cut.
    ``fault_seconds``: the range each fault lasts; ``duty``: the share of
    time a fault is in force. ``on_restart(node)`` runs after a killed node
    is restarted (start your service there). An exception raised in the
    block carries the seed (a note under Python 3.11+, a line on stderr
    before); ``announce=False`` leaves it out. Use it as a context manager::

        with disttest.Nemesis(self.cluster, history, on_restart=start) as nemesis:
            ...run the clients...
        # every fault is healed here
    """

    def __init__(self, cluster: Any, history: History | None = None, seed: int | None = None,
                 faults: tuple | list | None = None, fault_seconds: tuple = (0.3, 1.0),
                 duty: float = 0.5, delay: tuple = (0.05, 0.02),
                 on_restart: Callable[[Any], Any] | None = None,
                 announce: bool = True) -> None:
        self.cluster, self.history = cluster, history if history is not None else History()
        self.seed = resolve_seed(seed)
        network = cluster.info().get("network", "direct")
        cuttable = network not in (None, "direct") and not cluster.simulated
        if faults is None:
            faults = ALL_FAULTS if cuttable else PROCESS_FAULTS
        unknown = [f for f in faults if f not in ALL_FAULTS]
        if unknown or not faults:
            raise ValueError(f"Nemesis faults {list(faults)!r}: allowed are "
                             f"{', '.join(ALL_FAULTS)} (at least one)")
        if not cuttable and any(f in NETWORK_FAULTS for f in faults):
            raise ValueError(f"Nemesis faults {', '.join(f for f in faults if f in NETWORK_FAULTS)}"
                             f" need a cluster whose network can be cut; this one uses network "
                             f"= {network!r}: declare network = \"proxy\" on the test class, or "
                             f"draw only from {', '.join(PROCESS_FAULTS)}")
        if not 0 < duty <= 1:
            raise ValueError(f"Nemesis duty={duty!r}: the share of time with a fault, "
                             "0 < duty <= 1")
        low, high = fault_seconds
        if not 0 < low <= high:
            raise ValueError(f"Nemesis fault_seconds={fault_seconds!r}: (shortest, longest) "
                             "with 0 < shortest <= longest")
        self.faults, self.fault_seconds, self.duty = tuple(faults), (low, high), duty
        self.delay, self.on_restart, self.announce = delay, on_restart, announce
        self.history.meta["seed"] = self.seed
        self.history.meta["nemesis"] = {"faults": list(self.faults), "duty": duty,
                                        "fault_seconds": [low, high]}
        self.injected: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- the schedule: a pure function of the seed and the cluster's size ---------
    def schedule(self) -> Iterator[dict]:
        """The faults this seed draws, in order: ``{"quiet", "fault", "targets", "seconds", ...}``."""
        rng = random.Random(self.seed)
        names = [node.name for node in self.cluster]
        low, high = self.fault_seconds
        while True:
            seconds = rng.uniform(low, high)
            step = {"quiet": seconds * (1 - self.duty) / self.duty, "seconds": seconds,
                    "fault": rng.choice(self.faults)}
            if step["fault"] == "partition":
                shuffled = rng.sample(names, len(names))
                cut = rng.randint(1, max(1, len(names) // 2))
                step["targets"] = [sorted(shuffled[:cut]), sorted(shuffled[cut:])]
            elif step["fault"] == "delay":
                base, jitter = self.delay
                step["targets"] = []
                step["delay"] = round(rng.uniform(base / 2, base * 1.5), 4)
                step["jitter"] = jitter
            else:
                step["targets"] = [rng.choice(names)]
            yield step

    # -- running -----------------------------------------------------------------
    def start(self) -> Nemesis:
        self._thread = threading.Thread(target=self._run, name="disttest-nemesis", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop drawing faults, heal the one in force, and re-raise an error of the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> Nemesis:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and self.announce:
            self._announce(exc)
        self.stop()

    def _announce(self, exc: BaseException) -> None:
        """Tell the reader of a failure inside the block how to replay these faults."""
        note = f"nemesis seed {self.seed}: replay its faults with --seed {self.seed}"
        if hasattr(exc, "add_note"):  # Python 3.11+: printed with the traceback
            exc.add_note(note)
        else:
            sys.stderr.write(f"disttest: {note}\n")

    def _run(self) -> None:
        try:
            for step in self.schedule():
                if self._stop.wait(step["quiet"]):
                    return
                undo = self._inject(step)
                fault_id = self.history.fault(step["fault"], self._detail(step))
                self.injected.append(step)
                try:
                    self._stop.wait(step["seconds"])
                finally:
                    undo()
                    self.history.heal(fault_id)
                if self._stop.is_set():
                    return
        except BaseException as error:  # surfaced by stop(), in the test's thread
            self._error = error

    def _inject(self, step: dict) -> Callable[[], None]:
        cluster, fault = self.cluster, step["fault"]
        if fault == "kill":
            node = cluster.node(step["targets"][0])
            node.kill()

            def undo() -> None:
                node.restart()
                if self.on_restart is not None:
                    self.on_restart(node)
            return undo
        if fault == "pause":
            node = cluster.node(step["targets"][0])
            node.pause()
            return node.resume
        if fault == "partition":
            cluster.partition(*step["targets"])
        elif fault == "isolate":
            cluster.isolate(step["targets"][0])
        else:
            for a in cluster:
                for b in cluster:
                    if a is not b:
                        cluster.delay(a, b, step["delay"], step["jitter"])
        return cluster.heal

    @staticmethod
    def _detail(step: dict) -> str:
        if step["fault"] == "partition":
            return " | ".join(" ".join(group) for group in step["targets"])
        if step["fault"] == "delay":
            return f"{step['delay'] * 1000:.0f}ms ±{step['jitter'] * 1000:.0f}ms on every link"
        return step["targets"][0]
