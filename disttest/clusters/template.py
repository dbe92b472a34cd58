"""Template nodes: local nodes forked from a preloaded process.

``TemplateLauncher`` is the local launcher (``node_start = "template"``)
whose nodes come from a template process (``disttest/agent_template.py``)
instead of a new interpreter each. One template runs per configuration --
interpreter, working directory, ``sys.path``, the controller's ``PYTHON*``
variables and the ``preload`` list -- started on first use, stopped with the
pool. It runs the agent's command line, so it and the nodes it forks look
like spawned nodes to every tool (``ps``, ``cluster clean``). It has
imported the agent and the preloaded modules, so a node costs a ``fork``,
not an interpreter start and its imports.

What tells the template from a node at interpreter start (``sitecustomize``,
a process spy, a profiler) is one variable of its environment,
``DISTTEST_NODE_TEMPLATE=1`` (``template_process.TEMPLATE_MARK``), not its command line:
a forked node shares the template's command line, but its environment is
replaced by the node's own, so ``sys.argv``, ``os.environ`` and
``/proc/<pid>/cmdline`` of a forked node are those of a spawned one.
Code that counts nodes as they start counts spawned nodes at interpreter
start and forked ones with ``os.register_at_fork(after_in_child=...)`` in
the template, for children whose parent is the template.

A forked node is made like a spawned one: the controller creates its stdin
and stdout pipes and opens its log, and hands the three descriptors to the
template (``SCM_RIGHTS``), with the node's whole environment; the child
takes them as 0, 1 and 2, starts its own session and runs the agent, which
reads its bootstrap (its key, ports, peers) from that stdin as always. So it
still ends when the controller closes its stdin or dies; it asks for its
parent-death signal against the template. The template is the subreaper of
its nodes: it kills what an ended node left behind, and when the controller
ends it gives its nodes the grace period, then kills what is left
(disttest/containment.py). A kept node's template is told to let it run
(``ForkedPopen.outlive_controller``).

Refused, and spawned instead, with a one-line warning per configuration:
a template whose preloading failed, started a thread or left a descriptor
open. Spawned without a word, since forking them would not give what a
spawned node gets: nodes whose ``node_env`` sets ``PYTHON*`` variables
(they act at interpreter start only) and nodes run inside a network mode's
prefix (netns, userns). A spawned node is still made by a template
(``TemplateLauncher._keeper``: the one running, or one that preloads
nothing), which runs the node's command in the child instead of the agent,
so the template keeps what that node leaves too; a failed exec is reported
as ``subprocess.Popen`` reports it. Spawned by the controller itself, as
with ``node_start = "spawn"``: nodes whose environment exceeds 64 KiB or
whose working directory is gone (the spawn reports E2BIG or the missing
directory as before), nodes whose template cannot start, and every node on
systems without ``fork`` or ``SCM_RIGHTS``.
"""
from __future__ import annotations

import os
import socket
import sys
import threading

from disttest.clusters.launcher import LocalLauncher
from disttest.clusters.template_process import (ForkedPopen, Template, TemplateMadeProcess,
                                                TemplateRefused)




# Variables read at interpreter start (the template's, not the node's, take effect).
_AT_START = ("PYTHON", "LANG", "LC_")


# An environment this large goes to spawned nodes (a fork request is one datagram).
_LARGE_ENVIRONMENT = 64 * 1024


def supported() -> bool:
    return (hasattr(os, "fork") and hasattr(socket, "SCM_RIGHTS")
            and hasattr(socket, "SOCK_SEQPACKET") and sys.platform.startswith("linux"))


def key_preload(boot: dict, preload: tuple) -> tuple:
    """The configured ``preload`` list and the node's class's, in that order."""
    return preload + tuple(name for name in boot.get("template_preload", ())
                           if name not in preload)


class TemplateLauncher(LocalLauncher):
    """Forks local nodes from a preloaded template (see the module docstring)."""

    def __init__(self, executable: str | None = None, preload: tuple = (),
                 note=None, timeout: float = 30.0, learned=None, events=None) -> None:
        super().__init__(executable)
        self.preload = tuple(preload)
        self.note = note or (lambda text: None)
        # preload = "auto": a preload_auto.LearnedPreload; ``events`` hears of each
        # template started and of what the run learned.
        self.learned = learned
        self.events = events
        self.timeout = timeout
        self.templates: dict[tuple, Template | str] = {}
        self._lock = threading.Lock()

    def template_for(self, boot: dict, env: dict) -> tuple[Template | None, bool]:
        """The template that makes this node, and whether it forks it (else it
        runs the node's command: a spawned node, kept by the template); None
        (with a note when a template was refused) to spawn it here."""
        if not supported() or not os.path.isdir(boot["cwd"]):
            return None, False  # the spawn says what is wrong
        if sum(len(k) + len(v) + 2 for k, v in env.items()) > _LARGE_ENVIRONMENT:
            return None, False  # one request's size; the system may refuse it to exec too (E2BIG)
        if boot.get("exec_prefix"):
            return self._keeper(boot), False  # run in a namespace: a command of its own
        if any(name.startswith("PYTHON") for name in boot.get("env", {})):
            return self._keeper(boot), False  # read at interpreter start: exec a node of its own
        preload = key_preload(boot, self.preload)
        key = (self.executable, boot["cwd"], tuple(boot["sys_path"]), preload,
               tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_AT_START))))
        with self._lock:
            known = self.templates.get(key)
            if known is None:
                known, reason = self._start(boot, preload)
                if reason is not None:
                    known = reason
                    self.note(f"node template refused, spawning these nodes instead: {reason}")
                self.templates[key] = known
        if isinstance(known, Template):
            return known, True
        return self._keeper(boot), False

    def _keeper(self, boot: dict) -> Template | None:
        """A template to run spawned nodes' commands: any running one, else one
        that preloads nothing; None when none can start (they are spawned here)."""
        with self._lock:
            running = [t for t in self.templates.values() if isinstance(t, Template) and not t.gone]
            if running:
                return running[0]
            if ("keeper",) not in self.templates:
                try:
                    self.templates[("keeper",)] = Template(
                        self.executable, boot["cwd"], boot["sys_path"], self.environment(), (),
                        self.timeout)
                except (TemplateRefused, OSError) as exc:
                    self.templates[("keeper",)] = str(exc)
            keeper = self.templates[("keeper",)]
        return keeper if isinstance(keeper, Template) else None

    def _start(self, boot: dict, preload: tuple) -> tuple[Template | None, str | None]:
        """A template preloading ``preload`` (``auto`` expanded), or why there is none.

        A learned module that makes the template refuse is dropped from the
        learned list (see preload_auto.py) and the template started without it.
        """
        from disttest.clusters.preload_auto import AUTO

        learned: frozenset = frozenset()
        auto = AUTO in preload
        if auto and self.learned is not None:
            preload, learned = self.learned.expand(preload)
        preload = tuple(m for m in preload if m != AUTO)
        while True:
            try:
                template = Template(self.executable, boot["cwd"], boot["sys_path"],
                                    self.environment(), preload, self.timeout, learned)
            except TemplateRefused as exc:
                if exc.module not in learned:
                    return None, str(exc)
                self.learned.refuse(exc.module, str(exc))
                self.note(f"preload = \"auto\": {exc.module} is no longer preloaded: {exc}")
                preload = tuple(m for m in preload if m != exc.module)
                learned = learned - {exc.module}
                continue
            except OSError as exc:
                return None, str(exc)
            if template.skipped:
                self.learned.forget(template.skipped)
                first = next(iter(template.skipped.values()))
                self.note(f"preload = \"auto\": {len(template.skipped)} learned module(s) no "
                          f"longer import and are forgotten: {', '.join(template.skipped)} "
                          f"({first}{', ...' if len(template.skipped) > 1 else ''})")
                preload = tuple(m for m in preload if m not in template.skipped)
                learned = learned - set(template.skipped)
            if self.events is not None:
                self.events.emit("template_started", pid=template.popen.pid,
                                 modules=len(preload), learned=len(learned), auto=auto,
                                 history=str(getattr(self.learned, "path", "") or ""))
            return template, None

    def learn_from(self, entry) -> None:
        """Before ``entry``'s nodes stop: what they imported, when it uses ``auto``."""
        from disttest.clusters.preload_auto import AUTO

        if (self.learned is not None and not entry.simulated and not entry.hosts
                and AUTO in self.preload + tuple(entry.preload)):
            self.learned.learn(entry.nodes)

    def _create(self, boot: dict, log, env: dict[str, str]):
        template, forks = self.template_for(boot, env)
        if template is None:
            return super()._create(boot, log, env)
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            if forks:
                pid = template.fork([stdin_r, stdout_w, log.fileno()], env, self.timeout)
            else:
                pid = template.fork([stdin_r, stdout_w, log.fileno()], env, self.timeout,
                                    argv=self.command_of(boot), cwd=boot["cwd"])
        except BaseException:
            for fd in (stdin_r, stdin_w, stdout_r, stdout_w):
                os.close(fd)
            raise
        os.close(stdin_r)
        os.close(stdout_w)
        return ForkedPopen(template, pid, open(stdin_w, "wb"), open(stdout_r, "rb"))

    def _process(self, popen, log_path):
        if isinstance(popen, ForkedPopen):
            return TemplateMadeProcess(popen, log_path)
        return super()._process(popen, log_path)

    def _parent_pid(self, popen) -> int:
        return popen.template.popen.pid if isinstance(popen, ForkedPopen) else os.getpid()

    def close(self) -> None:
        with self._lock:
            templates, self.templates = self.templates, {}
        for template in templates.values():
            if isinstance(template, Template):
                template.close()
        if self.learned is not None:
            try:
                saved = self.learned.save()
            except Exception as exc:  # the history is a help, never a failure
                self.note(f"preload = \"auto\": could not record what nodes imported: {exc}")
            else:
                if saved and saved[0] and self.events is not None:
                    self.events.emit("preload_learned", added=saved[0], history=str(saved[1]))
