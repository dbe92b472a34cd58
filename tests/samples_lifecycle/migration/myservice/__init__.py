"""The toy service of docs/migration.md: a replicated key-value store.

A write sent to one server is stored there and forwarded to its peers. One
JSON object per line over TCP. ``python -m myservice --port N --peers
host:port,...`` runs a server in the foreground.
"""
import argparse
import json
import socket
import socketserver
import threading


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class Server:
    def __init__(self, address, peers):
        self.data = {}
        self.peers = [tuple(peer) for peer in peers]
        store = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                reply = store.handle(json.loads(self.rfile.readline()))
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        self.tcp = _TCPServer(tuple(address), Handler)

    def handle(self, request):
        if request["op"] == "put":
            self.data[request["key"]] = request["value"]
            if not request.get("forwarded"):
                for peer in self.peers:
                    _request(peer, dict(request, forwarded=True))
            return None
        if request["op"] == "get":
            return self.data.get(request["key"])
        return "pong"

    def start(self):
        threading.Thread(target=self.tcp.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.tcp.shutdown()
        self.tcp.server_close()


def _request(address, request):
    with socket.create_connection(tuple(address), timeout=5) as s:
        s.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(s.makefile().readline())


def put(address, key, value):
    _request(address, {"op": "put", "key": key, "value": value})


def get(address, key):
    return _request(address, {"op": "get", "key": key})


def ping(address):
    try:
        return _request(address, {"op": "ping"}) == "pong"
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser(prog="python -m myservice")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peers", default="")
    args = parser.parse_args()
    peers = [(host, int(port)) for host, port in
             (peer.rsplit(":", 1) for peer in args.peers.split(",") if peer)]
    Server(("127.0.0.1", args.port), peers).tcp.serve_forever()
