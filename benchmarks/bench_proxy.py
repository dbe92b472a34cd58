"""Network proxy: round trip and throughput, direct against through ``ProxyNetwork``.

Three processes, as in a test run: a server process stands in for the node
being called, a client process for the node calling it, and this process is
the controller that owns the ``ProxyNetwork`` and its event-loop thread (idle
otherwise, as a test thread waiting on a node is). The server serves two
protocols on two ports: *echo* (every byte sent back) and *sink* (an 8-byte
length, that many bytes, then a 1-byte acknowledgement). The client times
what it is told to and reports it on stdout.

Interleaved rounds, after one warm-up round; the order of the sides rotates
from round to round:

* round trip: ``--calls`` sequential 64-byte request/response exchanges on
  one connection, direct to the server's echo port and through the route
  ("client", "server", "echo") of the proxy;
* throughput: one ``--megabytes`` MiB transfer to the sink port, timed until
  the acknowledgement arrives, direct and through the proxy.

Both run against a ``ProxyNetwork()`` as clusters get it, and against one
with ``spin=--spin`` (polls that long before sleeping after activity). The
target is proxied round trip ≤ 2× direct. "proxy CPU" is the CPU time of this
process per round trip, which is the proxy thread's while the client works.
For information only, it also times the proxied round trip while another
thread of the controller runs pure Python (the proxy thread then competes for
the GIL), and with ``delay()`` of 1 ms on the link. Run from the repository
root:

    python benchmarks/bench_proxy.py [--rounds 10] [--calls 2000] [--megabytes 64]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time

import _util

TARGET = 2.0
MESSAGE = b"m" * 64

SERVER = r"""
import socket, struct, sys, threading

def nodelay(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def recv_exactly(conn, n, view):
    got = 0
    while got < n:
        k = conn.recv_into(view[:min(n - got, len(view))])
        if not k:
            raise EOFError
        got += k

def echo(conn):
    nodelay(conn)
    with conn:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            return

def sink(conn):
    nodelay(conn)
    view = memoryview(bytearray(1 << 20))
    with conn:
        try:
            while True:
                recv_exactly(conn, 8, view)
                (n,) = struct.unpack("!Q", view[:8])
                recv_exactly(conn, n, view)
                conn.sendall(b"k")
        except (EOFError, OSError):
            return

def serve(listener, handler):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
listeners = [socket.create_server((host, 0)) for _ in range(2)]
for listener, handler in zip(listeners, (echo, sink)):
    threading.Thread(target=serve, args=(listener, handler), daemon=True).start()
print(*[l.getsockname()[1] for l in listeners], flush=True)
sys.stdin.read()  # exit when the benchmark closes our stdin
"""


CLIENT = r"""
import socket, sys, time

MESSAGE = b"m" * 64

def connect(port, host="127.0.0.1"):
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock

def batch_rtt(sock, calls):
    send, recv, size = sock.sendall, sock.recv, len(MESSAGE)
    started = time.perf_counter()
    for _ in range(calls):
        send(MESSAGE)
        got = len(recv(size))
        while got < size:
            got += len(recv(size - got))
    return (time.perf_counter() - started) / calls

def transfer(sock, payload):
    started = time.perf_counter()
    sock.sendall(len(payload).to_bytes(8, "big"))
    sock.sendall(payload)
    if sock.recv(1) != b"k":
        raise RuntimeError("sink did not acknowledge")
    return len(payload) / (time.perf_counter() - started) / (1 << 20)

socks = {}
payload = b""
for line in sys.stdin:
    command, *words = line.split()
    if command == "connect":
        socks[words[0]] = connect(int(words[1]), *words[2:])
        result = 0
    elif command == "rtt":
        result = batch_rtt(socks[words[0]], int(words[1]))
    elif command == "transfer":
        if len(payload) != int(words[1]) << 20:
            payload = bytes(int(words[1]) << 20)
        result = transfer(socks[words[0]], payload)
    print(repr(result), flush=True)
"""


class Client:
    """The client node: a process of its own that times what it is told to."""

    def __init__(self, prefix: list[str] = ()) -> None:
        # ``prefix``: what runs it elsewhere (inside a node's network namespace)
        self.proc = subprocess.Popen([*prefix, sys.executable, "-c", CLIENT],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, *words) -> float:
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def spin(stop: threading.Event) -> None:
    """Pure Python work on another controller thread (holds the GIL as it can)."""
    n = 0
    while not stop.is_set():
        n += 1


def cpu_seconds() -> float:
    """CPU time of this process so far: while the client works, that is the proxy's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--spin", type=float, default=30e-6,
                        help="spin of the compared ProxyNetwork, in seconds (default 30e-6)")
    args = parser.parse_args()
    _util.setup("disttest benchmark: network proxy")
    from disttest.clusters.proxy import ProxyNetwork

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    client = Client()
    network = ProxyNetwork()                  # as a cluster gets it
    spinning = ProxyNetwork(spin=args.spin)   # for comparison: poll before sleeping
    sides = ("direct", "proxied", "proxied,spin")  # no spaces: sent as words
    try:
        echo_port, sink_port = map(int, server.stdout.readline().split())
        direct = {"echo": ("127.0.0.1", echo_port), "sink": ("127.0.0.1", sink_port)}
        routes = {"direct": direct}
        for side, net in zip(sides[1:], (network, spinning)):
            routes[side] = {name: net.add_route("client", "server", name, address)
                            for name, address in direct.items()}
        print(f"rounds: {args.rounds}; round trip: {args.calls} x {len(MESSAGE)}-byte "
              f"messages per batch; throughput: {args.megabytes} MiB per transfer")
        print(f"client and server: one process each; proxies: ProxyNetwork threads in this "
              f"process; 'spin': ProxyNetwork(spin={args.spin * 1e6:g} µs)\n")
        for side in sides:
            for name, (_host, port) in routes[side].items():
                client.ask("connect", f"{side}/{name}", port)

        rtt = {side: [] for side in sides}
        cpu = {side: [] for side in sides}
        mbs = {side: [] for side in sides}
        for round_ in range(args.rounds + 1):  # round 0 is the warm-up
            order = sides[round_ % 3:] + sides[:round_ % 3]
            for side in order:
                before = cpu_seconds()
                value = client.ask("rtt", f"{side}/echo", args.calls)
                if round_:
                    rtt[side].append(value)
                    cpu[side].append((cpu_seconds() - before) / args.calls)
            for side in order:
                value = client.ask("transfer", f"{side}/sink", args.megabytes)
                if round_:
                    mbs[side].append(value)

        info_calls = max(1, args.calls // 4)
        stop = threading.Event()
        spinner = threading.Thread(target=spin, args=(stop,))
        spinner.start()
        try:
            busy = _util.median([client.ask("rtt", "proxied/echo", info_calls)
                                 for _ in range(3)])
        finally:
            stop.set()
            spinner.join()
        network.delay("client", "server", 0.001)
        delayed = _util.median([client.ask("rtt", "proxied/echo", min(info_calls, 200))
                                for _ in range(3)])
        network.heal()

        median = _util.median
        base_rtt, base_mbs = median(rtt["direct"]), median(mbs["direct"])
        us = lambda s: f"{s * 1e6:.1f} µs"  # noqa: E731
        rows = [[f"round trip, {side}", us(median(rtt[side])), us(min(rtt[side])),
                 f"{median(rtt[side]) / base_rtt:.2f}×",
                 us(median(cpu[side])) if side != "direct" else "-"] for side in sides]
        rows += [[f"throughput, {side}", f"{median(mbs[side]):.0f} MiB/s",
                  f"{max(mbs[side]):.0f} MiB/s", f"{median(mbs[side]) / base_mbs:.2f}×", ""]
                 for side in sides]
        print(_util.table(["what", "median", "best", "vs direct", "proxy CPU"], rows))
        ratio = median(rtt["proxied"]) / base_rtt
        print(f"\nround trip proxied/direct: {ratio:.2f}× — {_util.verdict(ratio, TARGET)}")
        print("(proxy CPU: CPU time of this process per round trip while the client worked)")
        print("\nfor information (medians of 3 batches):")
        print(_util.table(["what", "per round trip"], [
            ["proxied, a controller thread spinning in pure Python", us(busy)],
            ["proxied, delay(client, server, 0.001)", us(delayed)],
        ]))
    finally:
        client.close()
        network.close()
        spinning.close()
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
