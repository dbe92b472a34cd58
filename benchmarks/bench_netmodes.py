"""Network modes side by side: round trip and throughput between two nodes.

The same server and client programs as bench_proxy.py (an echo port and a
sink port; a client process that times what it is told to), between two
"nodes" as each network mode connects them:

* direct: both processes on the machine's loopback, the client dials the
  server's port;
* proxy: the same, through the route ("a", "b") of a ``ProxyNetwork`` (its
  thread in this process, as in a test run);
* userns: the client in node a's namespace, the server in node b's, of a
  ``network = "userns"`` network (unprivileged user namespaces; no fault in
  force, so packets go over the veths and the bridge, in the kernel only);
* netns: the same with the machine's own namespaces, when run as root.

Interleaved rounds after one warm-up round; the order of the sides rotates
from round to round. The target: userns round trip ≤ 1.5× direct, judged on
the median of each round's own ratio (the load of a shared machine drifts
between rounds more than within one). Run from the repository root:

    python benchmarks/bench_netmodes.py [--rounds 10] [--calls 2000] [--megabytes 64]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import _util
from bench_proxy import SERVER, Client

TARGET = 1.5


class Server:
    """The server node: an echo and a sink port on ``host``, in what ``prefix`` enters."""

    def __init__(self, host: str, prefix: list[str] = ()) -> None:
        self.host = host
        self.proc = subprocess.Popen([*prefix, sys.executable, "-c", SERVER, host],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.echo, self.sink = map(int, self.proc.stdout.readline().split())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args()
    _util.setup("disttest benchmark: network modes")
    from disttest.clusters import netns_host, userns
    from disttest.clusters.netns import NetnsNetwork
    from disttest.clusters.proxy import ProxyNetwork
    from disttest.clusters.userns import UserHost

    closing = []
    try:
        server = Server("127.0.0.1")
        closing.append(server)
        client = Client()
        closing.append(client)
        proxy = ProxyNetwork()
        closing.append(proxy)
        # side -> (client, (host, echo port), (host, sink port))
        sides = {"direct": (client, ("127.0.0.1", server.echo), ("127.0.0.1", server.sink))}
        sides["proxy"] = (client, proxy.add_route("a", "b", "echo", ("127.0.0.1", server.echo)),
                          proxy.add_route("a", "b", "sink", ("127.0.0.1", server.sink)))
        namespaced = [("userns", userns.unavailable(), lambda: UserHost()),
                      ("netns", netns_host.unavailable(), lambda: None)]
        skipped = []
        for mode, problem, host in namespaced:
            if problem:
                skipped.append(f"{mode}: {problem}")
                continue
            net = NetnsNetwork(f"bench-{mode}", host=host())
            closing.append(net)
            a, b = net.add_node_boot("a"), net.add_node_boot("b")
            far = Server(b["host"], b["exec_prefix"])
            closing.append(far)
            near = Client(a["exec_prefix"])
            closing.append(near)
            sides[mode] = (near, (far.host, far.echo), (far.host, far.sink))
        names = list(sides)
        print(f"rounds: {args.rounds}; round trip: {args.calls} x 64-byte messages per batch; "
              f"throughput: {args.megabytes} MiB per transfer; uid {os.geteuid()}")
        for line in skipped:
            print(f"not measured: {line}")
        print()
        for side, (who, echo, sink) in sides.items():
            who.ask("connect", f"{side}/echo", echo[1], echo[0])
            who.ask("connect", f"{side}/sink", sink[1], sink[0])

        rtt = {side: [] for side in names}
        mbs = {side: [] for side in names}
        for round_ in range(args.rounds + 1):  # round 0 is the warm-up
            shift = round_ % len(names)
            order = names[shift:] + names[:shift]
            for side in order:
                value = sides[side][0].ask("rtt", f"{side}/echo", args.calls)
                if round_:
                    rtt[side].append(value)
            for side in order:
                value = sides[side][0].ask("transfer", f"{side}/sink", args.megabytes)
                if round_:
                    mbs[side].append(value)

        median = _util.median
        base_rtt, base_mbs = median(rtt["direct"]), median(mbs["direct"])
        us = lambda s: f"{s * 1e6:.1f} µs"  # noqa: E731
        rows = [[f"round trip, {side}", us(median(rtt[side])), us(min(rtt[side])),
                 f"{median(rtt[side]) / base_rtt:.2f}×"] for side in names]
        rows += [[f"throughput, {side}", f"{median(mbs[side]):.0f} MiB/s",
                  f"{max(mbs[side]):.0f} MiB/s", f"{median(mbs[side]) / base_mbs:.2f}×"]
                 for side in names]
        print(_util.table(["what", "median", "best", "vs direct"], rows))
        # On a shared machine the load drifts between rounds: the ratio of each
        # round's two measurements, taken moments apart, is steadier than the
        # ratio of the medians.
        print("\nround trip vs direct, the median of each round's own ratio:")
        for side in names[1:]:
            ratio = median([s / d for s, d in zip(rtt[side], rtt["direct"])])
            verdict = f" — {_util.verdict(ratio, TARGET)}" if side == "userns" else ""
            print(f"  {side}: {ratio:.2f}×{verdict}")
    finally:
        for thing in reversed(closing):
            thing.close()


if __name__ == "__main__":
    main()
