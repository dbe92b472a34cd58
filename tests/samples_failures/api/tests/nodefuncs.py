"""What the api sample runs on its nodes (importable, stdlib only).

Every function works the same on a node process and on a simulated node
(a thread of the test process), which is the point of the sample.
"""
import os
import socket
import threading
import time

from disttest import this_node

# Survives resets (a real node process lives on; simulated nodes share this
# module): how many times each node's on_reset callbacks ran.
RESETS = {}


def identity():
    return {"name": this_node.name, "index": this_node.index, "cluster": this_node.cluster_id,
            "host": this_node.host, "port": this_node.port(), "peers": this_node.peers(),
            "pid": os.getpid()}


def add(a, b):
    return a + b


def slow_add(a, b, delay):
    time.sleep(delay)
    return a + b


def remember(key, value):
    this_node.state[key] = value


def recall(key):
    return this_node.state.get(key)


def say(text):
    print(text, flush=True)
    return text


def work_until_stopped():
    """Background work that ends when the node is reset (this_node.stopping)."""
    rounds = 0
    while not this_node.stopping.wait(0.01):
        rounds += 1
    return rounds


def serve_name():
    """A small TCP service on this node's app port that answers "<cluster> <node>".

    Stopped by the node reset through ``this_node.on_reset``, as a real
    service under test would be.
    """
    answer = f"{this_node.cluster_id} {this_node.name}".encode()
    key = (this_node.cluster_id, this_node.name)
    sock = socket.socket(socket.AF_INET6 if ":" in this_node.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(this_node.address())
    sock.listen(16)
    sock.settimeout(0.05)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(answer)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    @this_node.on_reset
    def shut_down():
        stop.set()
        thread.join(2)
        sock.close()
        RESETS[key] = RESETS.get(key, 0) + 1

    return this_node.port()


def ask_peers():
    """What every peer's service answers, by peer name."""
    answers = {}
    for peer, (host, port) in sorted(this_node.peers().items()):
        with socket.create_connection((host, port), timeout=5) as conn:
            answers[peer] = conn.recv(256).decode()
    return answers


def resets():
    return RESETS.get((this_node.cluster_id, this_node.name), 0)
