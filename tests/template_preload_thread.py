"""A module that starts a thread when imported: a node template must refuse to fork it."""
import threading

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="started-at-import", daemon=True).start()
