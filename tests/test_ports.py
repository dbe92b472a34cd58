"""PortAllocator: distinct, locked, never a busy or well-known port, safe across processes.

Every test uses a lock directory of its own and a small range in
30000-32767: outside the default port_range (20000-29999) that other runs on
the machine use, and below the kernel's ephemeral ports.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import textwrap
import unittest
from pathlib import Path

from disttest.clusters.ports import WELL_KNOWN_DEV_PORTS, PortAllocator, port_is_free
from disttest.errors import ClusterStartError, PortRangeExhausted
from tests import support

HOST = "127.0.0.1"


def tearDownModule():
    support.shutdown_and_check()


def free_range(count: int) -> tuple[int, int]:
    """``count`` consecutive ports in 30000-32767, none of them dev ports or busy now."""
    for _ in range(200):
        low = random.randrange(30000, 32768 - count)
        ports = range(low, low + count)
        if not set(ports) & WELL_KNOWN_DEV_PORTS and all(port_is_free(HOST, p) for p in ports):
            return low, low + count - 1
    raise unittest.SkipTest(f"no {count} consecutive free ports in 30000-32767")


class PortAllocatorTests(unittest.TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="disttest-tests-locks-")
        self.addCleanup(tmp.cleanup)
        self.lock_dir = Path(tmp.name)

    def allocator(self, port_range):
        allocator = PortAllocator(port_range, HOST, lock_dir=self.lock_dir)
        self.addCleanup(allocator.release_all)
        return allocator

    def lock_files(self):
        return sorted(int(p.stem) for p in self.lock_dir.glob("*.lock"))

    def test_allocated_ports_are_distinct_locked_and_released(self):
        low, high = free_range(10)
        allocator = self.allocator((low, high))
        first = allocator.allocate(4)
        second = allocator.allocate(3)
        everything = first + second
        self.assertEqual(len(set(everything)), 7)
        self.assertTrue(all(low <= p <= high for p in everything), everything)
        self.assertEqual(allocator.held, frozenset(everything))
        self.assertEqual(self.lock_files(), sorted(everything))
        for port in everything:
            self.assertEqual((self.lock_dir / f"{port}.lock").read_text().strip(),
                             str(os.getpid()))
        allocator.release(first)
        self.assertEqual(self.lock_files(), sorted(second))
        self.assertEqual(allocator.held, frozenset(second))
        allocator.release_all()
        self.assertEqual(self.lock_files(), [])
        self.assertEqual(allocator.held, frozenset())

    def test_a_port_someone_listens_on_is_skipped(self):
        low, high = free_range(3)
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((HOST, low + 1))
        listener.listen(1)
        allocator = self.allocator((low, high))
        self.assertEqual(sorted(allocator.allocate(2)), [low, high])
        self.assertNotIn(low + 1, self.lock_files(), "a skipped port keeps no lock file")

    def test_exhaustion_names_the_range_and_the_holders(self):
        low, high = free_range(3)
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((HOST, low + 1))
        listener.listen(1)
        allocator = self.allocator((low, high))
        held = allocator.allocate(2)
        with self.assertRaises(PortRangeExhausted) as cm:
            allocator.allocate(1)
        error = cm.exception
        self.assertIsInstance(error, ClusterStartError)
        self.assertIn(f"port_range {low}-{high} has only 0 free port(s), 1 needed", str(error))
        self.assertEqual(error.port_range, (low, high))
        self.assertEqual(error.needed, 1)
        holders = "\n".join(error.holders)
        self.assertIn(f"{low + 1} listened on by pid {os.getpid()}", holders)
        self.assertIn(f"{low} locked by disttest run pid {os.getpid()}", holders)
        self.assertIn("widen port_range", str(error))
        self.assertEqual(allocator.held, frozenset(held), "a failed allocation keeps nothing")

    def test_a_partial_allocation_is_rolled_back(self):
        low, high = free_range(3)
        allocator = self.allocator((low, high))
        with self.assertRaises(PortRangeExhausted) as cm:
            allocator.allocate(4)
        self.assertIn("has only 3 free port(s), 4 needed", str(cm.exception))
        self.assertEqual(allocator.held, frozenset())
        self.assertEqual(self.lock_files(), [])
        self.assertEqual(len(allocator.allocate(3)), 3)

    def test_well_known_dev_ports_are_never_handed_out(self):
        everything = PortAllocator((1024, 65535), HOST, lock_dir=self.lock_dir).candidates()
        self.assertEqual(set(everything) & WELL_KNOWN_DEV_PORTS, set())
        self.assertEqual(len(everything), 65535 - 1024 + 1 - len(
            [p for p in WELL_KNOWN_DEV_PORTS if p >= 1024]))
        if not (port_is_free(HOST, 7999) and port_is_free(HOST, 8001)):
            self.skipTest("7999 or 8001 is in use on this machine")
        allocator = self.allocator((7999, 8001))
        self.assertEqual(sorted(allocator.allocate(2)), [7999, 8001])
        with self.assertRaises(PortRangeExhausted):
            allocator.allocate(1)

    def test_a_port_locked_by_another_process_is_skipped_and_named(self):
        low, high = free_range(2)
        child = self.hold_in_child((low, low))
        allocator = self.allocator((low, high))
        self.assertEqual(allocator.allocate(1), [high])
        with self.assertRaises(PortRangeExhausted) as cm:
            allocator.allocate(1)
        self.assertIn(f"{low} locked by disttest run pid {child.pid}", "\n".join(cm.exception.holders))

    def test_the_lock_of_a_killed_process_is_free_again(self):
        low, _ = free_range(1)
        child = self.hold_in_child((low, low))
        self.assertEqual(self.lock_files(), [low])
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # Its lock file is still there, but the kernel dropped the lock with it.
        self.assertEqual(self.lock_files(), [low])
        allocator = self.allocator((low, low))
        self.assertEqual(allocator.allocate(1), [low])
        self.assertEqual((self.lock_dir / f"{low}.lock").read_text().strip(), str(os.getpid()))
        allocator.release_all()
        self.assertEqual(self.lock_files(), [])

    def test_concurrent_processes_never_share_a_port(self):
        processes, per_process = 4, 3
        low, high = free_range(processes * per_process + 2)
        script = _CHILD.format(low=low, high=high, lock_dir=str(self.lock_dir),
                               count=per_process)
        children = [self.start_child(script) for _ in range(processes)]
        for child in children:  # let them loose together
            child.stdin.write("go\n")
            child.stdin.flush()
        allocations = []
        for child in children:
            line = child.stdout.readline()
            if not line:
                self.fail(f"child failed: {child.stderr.read()}")
            allocations.append(json.loads(line))
        everything = [p for ports in allocations for p in ports]
        self.assertEqual([len(a) for a in allocations], [per_process] * processes)
        self.assertEqual(len(set(everything)), len(everything), allocations)
        self.assertTrue(all(low <= p <= high for p in everything))
        self.assertEqual(self.lock_files(), sorted(everything))
        for child in children:  # end of stdin: each releases and exits
            child.stdin.close()
            if child.wait(10) != 0:
                self.fail(f"child failed: {child.stderr.read()}")
        self.assertEqual(self.lock_files(), [], "released locks leave no file behind")

    # -- helpers ----------------------------------------------------------------
    def start_child(self, script):
        child = support.popen_python(script, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.addCleanup(child.wait, 10)
        self.addCleanup(child.kill)
        for stream in (child.stdin, child.stdout, child.stderr):
            self.addCleanup(stream.close)
        return child

    def hold_in_child(self, port_range):
        child = self.start_child(_CHILD.format(low=port_range[0], high=port_range[1],
                                               lock_dir=str(self.lock_dir), count=1))
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        if not line:
            self.fail(f"child failed: {child.stderr.read()}")
        return child


_CHILD = textwrap.dedent("""
    import json, sys
    from disttest.clusters.ports import PortAllocator
    allocator = PortAllocator(({low}, {high}), "127.0.0.1", lock_dir={lock_dir!r})
    sys.stdin.readline()
    got = []
    for _ in range({count}):  # one at a time: more chances to collide
        got += allocator.allocate(1)
    print(json.dumps(got), flush=True)
    sys.stdin.read()  # hold the ports until the test closes our stdin
    allocator.release_all()
    """)


if __name__ == "__main__":
    unittest.main()
