"""The wire protocol: frames, the HMAC handshake, and the declared requests."""
from __future__ import annotations

import ast
import hmac
import inspect
import os
import pickle
import socket
import struct
import threading
import unittest

from pathlib import Path

from disttest.agent import Agent
from disttest.clusters import protocol
from disttest.errors import DisttestError
from disttest.requirements import Requirement
from tests import support
from tests.fixtures import nodefuncs as nf

KEY = os.urandom(32)


def tearDownModule():
    support.shutdown_and_check()


def run_both(server, client, timeout=5.0):
    """Run ``server(sock)`` in a thread and ``client(sock)`` here, on a socket pair.

    Returns ``{"server": result-or-exception, "client": result-or-exception}``.
    """
    a, b = socket.socketpair()
    a.settimeout(timeout)
    b.settimeout(timeout)
    outcome = {}

    def serve():
        try:
            outcome["server"] = server(a)
        except BaseException as exc:  # recorded for the test to inspect
            outcome["server"] = exc
        finally:
            a.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        outcome["client"] = client(b)
    except BaseException as exc:
        outcome["client"] = exc
    finally:
        try:
            b.shutdown(socket.SHUT_WR)  # a server still reading sees the end
        except OSError:
            pass
        thread.join(timeout)
        b.close()
    assert not thread.is_alive(), "the server side hung"
    return outcome


class FrameTests(unittest.TestCase):

    def test_frames_round_trip(self):
        payloads = [b"", b"x", os.urandom(65535), os.urandom(65536), os.urandom(1 << 20)]

        def send_all(sock):
            for payload in payloads:
                protocol.send_frame(sock, payload)

        def receive_all(sock):
            return [protocol.recv_frame(sock) for _ in payloads]

        outcome = run_both(send_all, receive_all)
        self.assertIsNone(outcome["server"])
        self.assertEqual(outcome["client"], payloads)

    def test_a_frame_is_a_length_then_the_bytes(self):
        a, b = socket.socketpair()
        with a, b:
            protocol.send_frame(a, b"hello")
            self.assertEqual(protocol.recv_exact(b, 9), struct.pack("!I", 5) + b"hello")

    def test_frame_over_the_limit_is_refused_before_reading_it(self):
        a, b = socket.socketpair()
        with a, b:
            protocol.send_frame(a, b"y" * 300)
            with self.assertRaises(ConnectionError) as cm:
                protocol.recv_frame(b, limit=256)
            self.assertIn("300 bytes exceeds the limit of 256", str(cm.exception))
            # The body was never read: it is still waiting in the socket.
            self.assertEqual(protocol.recv_exact(b, 300), b"y" * 300)

    def test_end_of_file_inside_a_frame(self):
        a, b = socket.socketpair()
        with b:
            a.sendall(struct.pack("!I", 10) + b"abc")
            a.close()
            with self.assertRaises(EOFError):
                protocol.recv_frame(b)


class HandshakeTests(unittest.TestCase):

    def test_the_right_key_authenticates_both_ways_then_frames_flow(self):
        def server(sock):
            channel = protocol.serve_handshake(sock, KEY)
            channel.send(channel.recv()[::-1])

        def client(sock):
            channel = protocol.client_handshake(sock, KEY)
            channel.send(b"ping")
            return channel.recv()

        outcome = run_both(server, client)
        self.assertIsNone(outcome["server"])
        self.assertEqual(outcome["client"], b"gnip")

    def test_a_client_with_a_wrong_key_is_refused_and_told_so(self):
        outcome = run_both(lambda s: protocol.serve_handshake(s, KEY),
                           lambda s: protocol.client_handshake(s, b"wrong"))
        self.assertIsInstance(outcome["server"], protocol.AuthenticationError)
        self.assertIn("client failed", str(outcome["server"]))
        self.assertIsInstance(outcome["client"], protocol.AuthenticationError)
        self.assertIn("refused the cluster key", str(outcome["client"]))

    def test_a_server_without_the_key_is_not_trusted(self):
        # An impostor can welcome anyone, but cannot answer the client's nonce.
        def impostor(sock):
            protocol.send_frame(sock, protocol._CHALLENGE + os.urandom(32))
            protocol.recv_frame(sock, 256)
            protocol.send_frame(sock, protocol._WELCOME + os.urandom(32))

        outcome = run_both(impostor, lambda s: protocol.client_handshake(s, KEY))
        self.assertIsNone(outcome["server"])
        self.assertIsInstance(outcome["client"], protocol.AuthenticationError)
        self.assertIn("node failed the key challenge", str(outcome["client"]))

    def test_a_server_with_a_different_key_is_not_trusted(self):
        # It refuses the client, and the client refuses it.
        outcome = run_both(lambda s: protocol.serve_handshake(s, b"other key"),
                           lambda s: protocol.client_handshake(s, KEY))
        self.assertIsInstance(outcome["server"], protocol.AuthenticationError)
        self.assertIsInstance(outcome["client"], protocol.AuthenticationError)

    def test_a_peer_that_is_not_disttest(self):
        outcome = run_both(lambda s: protocol.send_frame(s, b"SSH-2.0-OpenSSH"),
                           lambda s: protocol.client_handshake(s, KEY))
        self.assertIsInstance(outcome["client"], protocol.AuthenticationError)
        self.assertIn("did not send a disttest challenge", str(outcome["client"]))

    def test_oversized_frames_before_authentication_are_rejected(self):
        def huge_claim(sock):
            protocol.recv_frame(sock, 256)
            sock.sendall(struct.pack("!I", 1 << 30))  # claims 1 GiB, sends nothing
            return "sent"

        outcome = run_both(lambda s: protocol.serve_handshake(s, KEY), huge_claim)
        self.assertIsInstance(outcome["server"], ConnectionError)
        self.assertNotIsInstance(outcome["server"], protocol.AuthenticationError)
        self.assertIn("exceeds the limit of 256", str(outcome["server"]))

        # The client is as careful with what a server sends first.
        outcome = run_both(lambda s: s.sendall(struct.pack("!I", 1 << 30)),
                           lambda s: protocol.client_handshake(s, KEY))
        self.assertIsInstance(outcome["client"], ConnectionError)
        self.assertIn("exceeds the limit", str(outcome["client"]))

    def test_a_short_answer_is_a_failed_challenge(self):
        def short(sock):
            challenge = protocol.recv_frame(sock, 256)
            nonce = challenge[len(protocol._CHALLENGE):]
            # The right digest, but no nonce of its own to be challenged with.
            protocol.send_frame(sock, hmac.new(KEY, nonce, "sha256").digest())
            return protocol.recv_frame(sock, 256)

        outcome = run_both(lambda s: protocol.serve_handshake(s, KEY), short)
        self.assertIsInstance(outcome["server"], protocol.AuthenticationError)
        self.assertEqual(outcome["client"], protocol._FAILURE)

def tampered(change):
    """Run a handshake, then have the client send b"ping" and ``change`` what
    reaches the server: the server's outcome (its error, or what it read)."""
    def server(sock):
        channel = protocol.serve_handshake(sock, KEY)
        return [channel.recv(), channel.recv()]

    def client(sock):
        channel = protocol.client_handshake(sock, KEY)
        frames = []
        real = channel.sock

        class Capture:
            def sendall(self, data):
                frames.append(data)

        channel.sock = Capture()
        channel.send(b"ping")
        channel.send(b"pong")
        channel.sock = real
        for frame in change(frames):
            real.sendall(frame)

    return run_both(server, client)["server"]


class ChannelTests(unittest.TestCase):
    """After the handshake every frame carries a MAC bound to the session, its
    direction and its place in the stream."""

    def test_untouched_frames_pass(self):
        self.assertEqual(tampered(lambda frames: frames), [b"ping", b"pong"])

    def test_an_altered_frame_is_refused(self):
        def flip(frames):
            first = bytearray(frames[0])
            first[5] ^= 1
            return [bytes(first), frames[1]]

        outcome = tampered(flip)
        self.assertIsInstance(outcome, protocol.AuthenticationError)
        self.assertIn("failed its MAC", str(outcome))

    def test_a_replayed_or_reordered_frame_is_refused(self):
        for change in (lambda f: [f[0], f[0]], lambda f: [f[1], f[0]]):
            self.assertIsInstance(tampered(change), protocol.AuthenticationError)

    def test_a_frame_without_a_mac_is_refused(self):
        outcome = tampered(lambda frames: [struct.pack("!I", 4) + b"ping"])
        self.assertIsInstance(outcome, protocol.AuthenticationError)

    def test_frames_are_read_one_by_one_however_the_bytes_arrive(self):
        # A channel reads what the socket has, past the frame it needs: the rest
        # is the start of the next frame, whether several frames came in one
        # segment or one frame (or its header) in several.
        payloads = [b"", b"x", b"yz" * 100, os.urandom(65535), os.urandom(1 << 20), b"end"]
        a, b = socket.socketpair()
        with a, b:
            b.settimeout(10)  # a frame lost in a buffer fails the test, never hangs it
            sender = protocol.Channel(a, KEY, client=True)
            receiver = protocol.Channel(b, KEY, client=False)
            frames = []

            class Capture:
                def sendall(self, data):
                    frames.append(data)

            sender.sock = Capture()
            for payload in payloads:
                sender.send(payload)
            stream = b"".join(frames)
            pieces = [stream[:2], stream[2:7]]  # a header in two pieces, then more
            position, size = 7, 1
            while position < len(stream):
                pieces.append(stream[position:position + size])
                position, size = position + size, size * 3
            writer = threading.Thread(target=lambda: [a.sendall(p) for p in pieces])
            writer.start()
            try:
                self.assertEqual([receiver.recv() for _ in payloads], payloads)
            finally:
                writer.join()

    def test_a_frame_is_not_valid_in_the_other_direction(self):
        def server(sock):
            channel = protocol.serve_handshake(sock, KEY)
            channel.send(b"reply")
            return channel.recv()

        def client(sock):
            channel = protocol.client_handshake(sock, KEY)
            # Send the server's own frame back to it, bytes unchanged.
            sock.sendall(_reflect(sock))
            return channel

        def _reflect(sock):
            header = protocol.recv_exact(sock, 4)
            (size,) = struct.unpack("!I", header)
            return header + protocol.recv_exact(sock, size)

        outcome = run_both(server, client)
        self.assertIsInstance(outcome["server"], protocol.AuthenticationError)


class ChallengeTests(unittest.TestCase):

    def test_every_challenge_is_new(self):
        challenges = []

        def record(sock):
            challenges.append(protocol.recv_frame(sock, 256))

        for _ in range(2):
            run_both(lambda s: protocol.serve_handshake(s, KEY), record)
        self.assertEqual(len(challenges), 2)
        self.assertNotEqual(challenges[0], challenges[1])
        self.assertTrue(all(c.startswith(protocol._CHALLENGE) for c in challenges))



def _request_sites():
    """Every place in disttest/ that names an op: (module, op name) for calls of
    ``request``/``_request``/``dumps_request`` with a literal first argument,
    and for tuple literals shaped like a request (a declared op name, then as
    many items as it takes arguments)."""
    sites = []
    root = Path(protocol.__file__).resolve().parent.parent
    for path in sorted(root.rglob("*.py")):
        module = path.relative_to(root.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), module)):
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                first = node.args[0]
                if name in ("request", "_request", "dumps_request") and isinstance(
                        first, ast.Constant) and isinstance(first.value, str):
                    sites.append((module, first.value))
            if (isinstance(node, ast.Tuple) and node.elts
                    and isinstance(node.elts[0], ast.Constant)
                    and node.elts[0].value in protocol.OPS
                    and len(node.elts) - 1 == len(protocol.OPS[node.elts[0].value][0])):
                sites.append((module, ("tuple", node.elts[0].value)))
    return sites


class DeclaredOpsTests(unittest.TestCase):
    """protocol.OPS is the one list of requests: the agent serves exactly
    those, and only Node builds them."""

    @classmethod
    def setUpClass(cls):
        cls.pool = support.make_pool()
        cls.cluster = cls.pool.acquire(Requirement(1, fresh=True))
        cls.node = cls.cluster[0]

    @classmethod
    def tearDownClass(cls):
        cls.pool.release(cls.cluster)
        support.shutdown_and_check(cls.pool)

    def test_the_op_table(self):
        self.assertEqual({name: args for name, (args, _) in protocol.OPS.items()}, {
            "ping": (), "call": ("fn", "args", "kwargs"), "spawn": ("fn", "args", "kwargs"),
            "spawn_status": ("spawn_id", "wait", "reads_error"), "spawn_failures": (),
            "configure": ("settings",),
            "reset": ("timeout",), "coverage_save": (), "info": (), "stacks": (),
            "detach": ("ttl", "lock_paths", "record_path", "log_path", "call_timeout"),
            "attach": (),
            "shutdown": (), "imports": ("project_dirs",)})
        for name, (_, reply) in protocol.OPS.items():
            self.assertTrue(reply, name)

    def test_the_agent_serves_exactly_the_declared_ops_with_their_arguments(self):
        served = {name[3:]: getattr(Agent, name) for name in dir(Agent)
                  if name.startswith("op_")}
        self.assertEqual(set(served), set(protocol.OPS))
        for name, method in served.items():
            params = tuple(inspect.signature(method).parameters)[1:]
            self.assertEqual(params, protocol.OPS[name][0], name)

    def test_requests_are_built_only_by_node_and_only_of_declared_ops(self):
        sites = _request_sites()
        self.assertEqual({m for m, _ in sites},
                         {"disttest/clusters/node.py", "disttest/clusters/rpc.py"})
        names = {op for _, op in sites}
        self.assertEqual(names, set(protocol.OPS), "every op is sent by some Node method, "
                         "and no request is a bare tuple")

    def test_request_checks_the_declaration(self):
        self.assertEqual(protocol.request("reset", 2.0), ("reset", 2.0))
        with self.assertRaisesRegex(protocol.ProtocolError, "unknown op 'bogus'; a node serves "
                                    "attach, call, configure"):
            protocol.request("bogus")
        with self.assertRaisesRegex(protocol.ProtocolError,
                                    r"op 'reset' takes 1 argument\(s\) \(timeout\), not 0"):
            protocol.request("reset")

    def _raw(self, message):
        """Send ``message`` as it is, on a connection of our own; the reply."""
        conn = socket.create_connection((self.node.host, self.node.process.control_port), 5)
        with conn:
            channel = protocol.client_handshake(conn, bytes.fromhex(self.node.boot["key"]))
            channel.send(pickle.dumps(message))
            return pickle.loads(channel.recv())

    def test_a_node_rejects_an_unknown_op_with_a_protocol_error(self):
        for message, says in [(("op_bogus",), "unknown op 'op_bogus'"),
                              (("__init__", {}), "unknown op '__init__'"),
                              (("reset",), "op 'reset' takes 1 argument"),
                              (("ping", 1, 2), "op 'ping' takes 0 argument"),
                              (["ping"], "a request is a tuple"),
                              ((), "a request is a tuple")]:
            with self.subTest(message=message):
                status, (kind, text, traceback_text, blob) = self._raw(message)
                self.assertEqual((status, kind), (protocol.ERR, protocol.PROTOCOL_ERROR))
                self.assertIn(says, text)
                self.assertEqual((traceback_text, blob), ("", None))
        self.assertEqual(self._raw(("ping",)), (protocol.OK, self.node.pid))

    def test_the_controller_raises_a_protocol_error_as_a_disttest_error(self):
        payload = pickle.dumps(("bogus", 1))
        with self.assertRaises(DisttestError) as cm:
            self.node._request_bytes(payload, "bogus")
        self.assertEqual(cm.exception.diagnosis.kind, "protocol")
        self.assertIn(f"node {self.node.name} refused a request: unknown op 'bogus'",
                      str(cm.exception))
        self.assertGreater(self.node.ping(), 0)  # the connection is still usable

    def test_node_methods_speak_the_declared_ops(self):
        self.assertEqual(self.node.attach(), self.node.pid)
        info = self.node.info()
        self.assertEqual((info["pid"], info["name"]), (self.node.pid, self.node.name))
        self.assertEqual(self.node.reset(2.0), ([], []))



class ResetAnswerTests(unittest.TestCase):
    """One runner for on_reset callbacks: its failures are in the reset answer,
    and in the node's log when nobody asks (the controller is gone)."""

    @classmethod
    def setUpClass(cls):
        cls.pool = support.make_pool()

    @classmethod
    def tearDownClass(cls):
        support.shutdown_and_check(cls.pool)

    def setUp(self):
        self.cluster = self.pool.acquire(Requirement(1, fresh=True))
        self.addCleanup(self.pool.release, self.cluster)
        self.node = self.cluster[0]

    def test_a_failing_callback_is_in_the_answer_and_the_others_still_run(self):
        self.node.call(nf.register_reset_marker, "first")
        self.node.call(nf.raise_on_reset, "cannot shut down")
        self.node.call(nf.register_reset_marker, "last")
        problems, busy = self.node.reset(5.0)
        self.assertEqual(busy, [])
        self.assertEqual(len(problems), 1, problems)
        self.assertRegex(problems[0], r"^on_reset callback raise_on_reset.<locals>.callback raised")
        self.assertIn("RuntimeError: cannot shut down", problems[0])
        self.assertEqual(self.node.call(nf.reset_log), ["last", "first"])  # newest first
        self.assertIn("RuntimeError: cannot shut down", self.node.logs())

    def test_a_callback_that_blocks_is_reported_after_the_timeout(self):
        self.node.call(nf.block_on_reset, 30)
        problems, _ = self.node.reset(0.5)
        self.assertEqual(problems, ["on_reset callbacks still running 0.5s after they were "
                                    "started (a callback blocks)"])

    def test_when_the_controller_is_gone_failures_go_to_the_log(self):
        self.node.call(nf.raise_on_reset, "stopping without a controller")
        self.node.process.close_stdin()  # what the node sees when the controller dies
        self.assertIsNotNone(self.node.process.wait(10))
        log = self.node.logs()
        self.assertIn("on_reset callback raise_on_reset.<locals>.callback raised", log)
        self.assertIn("RuntimeError: stopping without a controller", log)


if __name__ == "__main__":
    unittest.main()
