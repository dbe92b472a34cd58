"""The delay line of the netns modes: the controller's end of every node's line device.

A namespace routes the packets of a dropped or delayed link to its line
device (a TUN device as root; a veth whose far end is a packet socket in the
unprivileged mode); the line reads them, discards those of a dropped link,
holds those of a delayed one for ``seconds ± jitter`` (in order), and writes
the others into the line device of the destination's namespace. One thread
per network, started with its first device.
"""
from __future__ import annotations

import os
import random
import selectors
import socket
import threading
import time
import traceback
from collections import deque
from typing import Callable

from disttest.clusters.waker import Waker

__all__ = ["DelayLine"]


class DelayLine:
    """The thread at the controller's end of every TUN device of one network.

    It reads the packets a namespace routes to its TUN device, discards those of
    a dropped link, holds those of a delayed one, and writes the others (and the
    held ones when due) into the line device of the destination's namespace.
    """

    def __init__(self, on_crash: Callable[[str], None]) -> None:
        self.on_crash = on_crash
        self.lock = threading.Lock()
        self.names: dict[bytes, str] = {}   # packed IPv4 address -> node name
        self.fds: dict[str, int] = {}       # node name -> its device's descriptor
        self.frames: dict[str, bytes] = {}  # node name -> header of what is written to it
        self.pending: list[tuple[str, int]] = []
        self.cuts: dict = {}
        self.delays: dict = {}
        self.queues: dict[tuple[str, str], deque] = {}  # link -> (due, packet), in order
        self.last: dict[tuple[str, str], float] = {}    # link -> due time of its last packet
        self.random = random.Random()
        self.stopping = False
        # Made here, so waking and stop() work whether or not a device was ever added.
        self.selector = selectors.DefaultSelector()
        self.waker = Waker()
        self.selector.register(self.waker, selectors.EVENT_READ, None)
        self.thread: threading.Thread | None = None  # started with the first device
        self.closed = False

    # -- from the network's thread ------------------------------------------------
    def add_address(self, address: str, name: str) -> None:
        with self.lock:
            self.names[socket.inet_aton(address)] = name

    def add_device(self, name: str, fd: int, frame: bytes = b"") -> None:
        """Node ``name``'s device: a TUN descriptor (IP packets as they are), or a
        packet socket on a veth (``frame``: the Ethernet header that takes a packet
        to the node; a frame read from it starts with a header of that length)."""
        with self.lock:
            self.fds[name] = fd
            self.frames[name] = frame
            self.pending.append((name, fd))
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="disttest-netns",
                                               daemon=True)
                self.thread.start()
        self.waker.wake()

    def set_faults(self, cuts: dict, delays: dict) -> None:
        with self.lock:
            self.cuts, self.delays = cuts, delays

    def flush(self) -> None:
        """Release every held packet now (of links not cut)."""
        with self.lock:
            for link, queue in self.queues.items():
                for _due, packet in queue:
                    if link not in self.cuts:
                        self.deliver(link[1], packet)
            self.queues.clear()
            self.last.clear()

    def stop(self) -> None:
        """Stop the thread (if it ever started) and close the wake-up sockets; idempotent."""
        self.stopping = True
        if self.closed:
            return
        if self.thread is not None:
            self.waker.wake()
            self.thread.join()
            self.thread = None
        self.closed = True
        self.selector.close()
        self.waker.close()

    # -- in the thread ------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stopping:
                with self.lock:
                    for name, fd in self.pending:
                        self.selector.register(fd, selectors.EVENT_READ, name)
                    self.pending.clear()
                    timeout = self.next_due()
                for key, _events in self.selector.select(timeout):
                    if key.data is None:
                        self.waker.drain()
                    else:
                        self.receive(key.fd, key.data)
                with self.lock:
                    self.release(time.monotonic())
        except BaseException:
            self.on_crash(traceback.format_exc())

    def next_due(self) -> float | None:
        if not self.queues:
            return None
        soonest = min(queue[0][0] for queue in self.queues.values())
        return max(0.0, soonest - time.monotonic())

    def receive(self, fd: int, source: str) -> None:
        packets = []
        for _ in range(256):  # then let the other devices have their turn
            try:
                packets.append(os.read(fd, 65536))
            except BlockingIOError:
                break
            except OSError:  # the device is gone: the network is closing
                break
        now = time.monotonic()
        with self.lock:
            skip = len(self.frames.get(source, b""))
            for packet in packets:
                self.route(source, packet[skip:] if skip else packet, now)

    def route(self, source: str, packet: bytes, now: float) -> None:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return  # not IPv4: nothing a node sent to a peer
        target = self.names.get(packet[16:20])
        link = (source, target)
        if target is None or link in self.cuts:
            return  # dropped (a rejected link never routes here)
        delay = self.delays.get(link)
        queue = self.queues.get(link)
        if delay is None and not queue:
            self.deliver(target, packet)
            return
        due = self.last.get(link, 0.0)
        if delay is not None:
            seconds, jitter = delay
            if jitter:
                seconds += self.random.uniform(-jitter, jitter)
            due = max(due, now + seconds)  # never ahead of the packet before it
        self.last[link] = due
        if queue is None:
            queue = self.queues[link] = deque()
        queue.append((due, packet))

    def release(self, now: float) -> None:
        for link in list(self.queues):
            queue = self.queues[link]
            while queue and queue[0][0] <= now:
                packet = queue.popleft()[1]
                if link not in self.cuts:
                    self.deliver(link[1], packet)
            if not queue:
                del self.queues[link]

    def deliver(self, target: str, packet: bytes) -> None:
        fd = self.fds.get(target)
        if fd is not None:
            frame = self.frames[target]
            try:
                os.write(fd, frame + packet if frame else packet)
            except OSError:  # the device is gone, or refuses the packet: it is lost
                pass
