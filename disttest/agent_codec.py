"""What a node decodes and describes (node side, stdlib only): requests,
errors, the stacks of its threads, its memory.

Imported by the agent after its ready line: pickle, traceback and the
controller's ``__main__`` are not on the start-up path.
"""
from __future__ import annotations

import io
import os
import sys
import threading

from disttest import this_node
from disttest.clusters import protocol

_OWN_MODULES = ("disttest.agent", __name__)

_pickle = None


def load_pickle():
    """The C pickle module, with ``NodeUnpickler`` (see below)."""
    global _pickle
    if _pickle is None:
        # The C module: pickle.py would also import re, ~3 ms of start-up.
        import _pickle as pickle

        pickle.HIGHEST_PROTOCOL = 5

        class Unpickler(pickle.Unpickler):
            # Functions of the controller's ``__main__`` module (a test file
            # run as a script) resolve against that file, loaded here as
            # ``__mp_main__`` the way multiprocessing's spawn does.
            def find_class(self, module, name):
                if module == "__main__":
                    _load_controller_main()
                return super().find_class(module, name)

        pickle.NodeUnpickler = Unpickler
        _pickle = pickle
    return _pickle


main_path: str | None = None  # the controller's __main__ file, set by the agent
_main_loaded = False


def _load_controller_main() -> None:
    global _main_loaded
    if _main_loaded or not main_path:
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location("__mp_main__", main_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__mp_main__"] = module
    sys.modules["__main__"] = module
    _main_loaded = True
    spec.loader.exec_module(module)


def loads(data: bytes):
    """A request, unpickled as the node sees the controller's objects."""
    pickle = load_pickle()
    # NodeUnpickler differs only for a name of module __main__ while the controller's
    # is still to be loaded; pickle spells module names out, so a request without
    # those bytes takes the C unpickler alone (the common case, a few µs less a call).
    if _main_loaded or not main_path or b"__main__" not in data:
        return pickle.loads(data)
    return pickle.NodeUnpickler(io.BytesIO(data)).load()


def describe(exc: BaseException, unpicklable=None) -> tuple:
    """(type name, message, traceback text, pickled exception or None)."""
    import traceback

    pickle = load_pickle()
    if unpicklable is not None:
        kind = type(unpicklable)
        message = (f"the result of type {kind.__module__}.{kind.__qualname__} cannot be "
                   f"pickled to send back: {exc}")
        return (protocol.SERIALIZATION_ERROR, message, "", None)
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    tb = exc.__traceback__
    # Hide the agent's own frames: the user's code starts below them.
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in _OWN_MODULES:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(kind, exc, tb))
    try:
        blob = pickle.dumps(exc)
    except Exception:
        blob = None
    return (name, str(exc), text, blob)


def user_stacks() -> list:
    """[(thread name, stack text)] of every thread that runs the user's code."""
    import traceback

    ours = (os.path.dirname(os.path.abspath(this_node.__file__)) + os.sep,
            threading.__file__)
    stdlib = os.path.dirname(os.__file__) + os.sep

    def users(filename: str) -> bool:  # not the standard library's nor disttest's
        return not (filename.startswith("<") or filename.startswith(ours) or (
            filename.startswith(stdlib) and "-packages" not in filename))

    frames = sys._current_frames()
    stacks = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident)
        if frame is None or thread.ident == threading.get_ident():
            continue
        entries = [e for e in traceback.extract_stack(frame)
                   if not e.filename.startswith(ours)]
        if any(users(e.filename) for e in entries):  # else: disttest's own, idle
            stacks.append((thread.name, "".join(traceback.format_list(entries))))
    return stacks


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def empty_dir(path: str) -> list[str]:
    """Remove what is in a node's directory (its ``tmp`` stays, emptied): the
    problems that kept it from being emptied."""
    import shutil

    problems = []
    for name in os.listdir(path):
        entry = os.path.join(path, name)
        try:
            if os.path.isdir(entry) and not os.path.islink(entry):
                shutil.rmtree(entry)
            else:
                os.unlink(entry)
        except OSError as exc:
            problems.append(f"could not empty the node's directory: {exc}")
            break
    os.makedirs(os.path.join(path, "tmp"), exist_ok=True)
    return problems
