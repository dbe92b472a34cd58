"""What a failing cluster class leaves for the reader: its nodes' logs, and annotations.

When a class that had a failure or error gives its cluster back, the tail of
each node's log is printed in a section (a collapsible ``::group::`` on
GitHub Actions). On GitHub Actions every failed test also becomes an
``::error`` annotation at the line of the test file where it failed.
"""
from __future__ import annotations

import os
import re

from disttest.events import Event

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def _escape(text: str, property_value: bool = False) -> str:
    # GitHub workflow command escaping.
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


class FailureLogs:
    """Subscribe ``on_event``; call ``annotations()`` at the end of the run."""

    def __init__(self, stream, result_getter, github: bool, mid_line, tail: int = 40) -> None:
        self.stream = stream
        self.result = result_getter
        self.github = github
        self.mid_line = mid_line
        self.tail = tail

    def on_event(self, event: Event) -> None:
        if event.kind != "class_finished":
            return
        result = self.result()
        if result is None:
            return
        failed = [r for r in result.records if r.classname == event.cls
                  and r.outcome in ("failed", "error")]
        if not failed:
            return
        if self.mid_line():
            self.stream.write("\n")
        for node in event.nodes:
            text = node.logs(tail=self.tail).rstrip()
            title = f"{node.name} log (cluster {event.cluster}) for failing {event.cls}"
            if self.github:
                self.stream.write(f"::group::{title}\n{text}\n::endgroup::\n")
            else:
                self.stream.write(f"---- {title} ----\n{text or '(empty)'}\n")
        if not self.github:
            self.stream.write("---- end of node logs ----\n")
        self.stream.flush()

    def annotations(self) -> None:
        """One ``::error`` per failed test, at its frame in the project's files."""
        result = self.result()
        if not self.github or result is None:
            return
        cwd = os.getcwd()
        for record in result.records:
            if record.outcome not in ("failed", "error"):
                continue
            where = ""
            for match in _FRAME.finditer(record.details or ""):
                path = match.group("file")
                if os.path.abspath(path).startswith(cwd) and "site-packages" not in path:
                    where = (f"file={_escape(os.path.relpath(path, cwd), True)},"
                             f"line={match.group('line')},")
            title = _escape(f"{record.outcome}: {record.id}", True)
            message = _escape(record.message or record.outcome)
            self.stream.write(f"::error {where}title={title}::{message}\n")
        self.stream.flush()
