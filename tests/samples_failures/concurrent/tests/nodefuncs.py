"""A node service that proves each node owns its ports (stdlib only).

Each node listens on its own app port and answers "<cluster> <node>". If two
runs ever handed out the same port at the same time, binding would fail on
one node (the port is listened on), or a peer would answer with another run's
cluster id.
"""
import socket
import threading

from disttest import this_node


def serve():
    answer = f"{this_node.cluster_id} {this_node.name}".encode()
    sock = socket.socket()
    # As servers do (socketserver, asyncio): connections this service closed
    # linger in TIME_WAIT and would block the port for a minute without it. A port
    # some other socket listens on still fails to bind.
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

    return this_node.port()


def ask_peers():
    answers = {}
    for peer, (host, port) in sorted(this_node.peers().items()):
        with socket.create_connection((host, port), timeout=5) as conn:
            answers[peer] = conn.recv(256).decode()
    return answers
