"""Waking a thread that waits in select or poll, from any other thread."""
from __future__ import annotations

import socket

__all__ = ["Waker"]


class Waker:
    """A non-blocking socketpair: the waiting thread watches ``fileno()``, others call
    ``wake()``, and the woken thread calls ``drain()`` before it waits again."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        for sock in (self.reader, self.writer):
            sock.setblocking(False)

    def fileno(self) -> int:
        return self.reader.fileno()

    def wake(self) -> None:
        try:
            self.writer.send(b"\0")
        except OSError:  # full (the thread is awake anyway) or closed (it has stopped)
            pass

    def drain(self) -> None:
        try:
            while self.reader.recv(4096):
                pass
        except OSError:  # nothing left to read
            pass

    def close(self) -> None:
        self.reader.close()
        self.writer.close()
