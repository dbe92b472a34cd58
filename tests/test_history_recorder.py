"""The history recorder: thread safety, completions, merging, files."""
from __future__ import annotations

import json
import os
import tempfile
import threading
import unittest

from disttest.history.operations import UNKNOWN, faults, operations
from disttest.history.recorder import History, HistoryFormatError


class Refused(Exception):
    pass


class Recording(unittest.TestCase):
    def test_completions_and_their_meaning(self):
        history = History()
        with history.op("c1", "write", 1, key="x"):
            pass                                            # ok, no output
        with history.op("c1", "read", key="x") as op:
            op.ok(1)
        with self.assertRaises(Refused):
            with history.op("c2", "write", 2, key="x", fail_on=(Refused,)):
                raise Refused("not the leader")             # certainly not applied
        with self.assertRaises(TimeoutError):
            with history.op("c2", "write", 3, key="x"):
                raise TimeoutError("no reply")              # maybe applied
        never = history.op("c3", "write", 4, key="x")       # the client died
        ops = operations(history)
        self.assertEqual([(o.f, o.input, o.status) for o in ops],
                         [("write", 1, "ok"), ("read", None, "ok"), ("write", 2, "fail"),
                          ("write", 3, "info"), ("write", 4, "info")])
        self.assertEqual(ops[1].output, 1)
        self.assertEqual(ops[2].error, "Refused: not the leader")
        self.assertIs(ops[3].output, UNKNOWN)
        self.assertEqual(ops[4].error, "never completed")
        self.assertTrue(all(o.call <= o.ret for o in ops))
        never.ok()
        with self.assertRaises(RuntimeError):
            never.ok()

    def test_many_threads_record_every_event_with_ordered_times(self):
        history = History()

        def client(name):
            for i in range(500):
                with history.op(name, "write", i, key=i % 7):
                    pass

        threads = [threading.Thread(target=client, args=(f"c{n}",)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        events = history.events()
        self.assertEqual(len(events), 8 * 500 * 2)
        self.assertEqual(len({e[1] for e in events}), 8 * 500)
        times = [e[6] for e in events]
        self.assertEqual(times, sorted(times))
        self.assertTrue(all(o.status == "ok" for o in operations(history)))

    def test_faults_are_recorded_with_their_end(self):
        history = History()
        fid = history.fault("partition", "n1 | n2 n3")
        with history.op("c1", "read", key="x") as op:
            op.ok(None)
        history.heal(fid)
        (fault,) = faults(history)
        self.assertEqual((fault.name, fault.detail), ("partition", "n1 | n2 n3"))
        self.assertLess(fault.start, fault.end)
        self.assertEqual(len(operations(history)), 1)

    def test_merge_renumbers_the_other_recorders_ids(self):
        ours, theirs = History(), History()
        with ours.op("test", "write", 1):
            pass
        with theirs.op("node-1", "read") as op:
            op.ok(1)
        ours.merge(theirs.events())
        ops = operations(ours)
        self.assertEqual(len({o.id for o in ops}), 2)
        self.assertEqual([o.process for o in ops], ["test", "node-1"])


class Files(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def test_save_and_load_round_trip(self):
        history = History(meta={"seed": 42})
        with history.op("c1", "cas", (1, 2), key=("a", 1)) as op:
            op.ok(False)
        history.fault("kill", "n2")
        path = history.save(os.path.join(self.dir.name, "sub", "h.json"))
        loaded = History.load(path)
        self.assertEqual(loaded.meta, {"seed": 42})
        self.assertEqual(loaded.events(), history.events())
        op = operations(loaded)[0]
        self.assertEqual((op.key, op.input, op.output), (("a", 1), (1, 2), False))

    def _write(self, content: str) -> str:
        path = os.path.join(self.dir.name, "bad.json")
        with open(path, "w") as stream:
            stream.write(content)
        return path

    def test_bad_files_are_named_with_what_is_wrong(self):
        cases = [("{", "not valid JSON"),
                 ('{"format": "other"}', "not a disttest history"),
                 ('{"format": "disttest-history", "version": 9, "events": []}',
                  "version 9 is not supported"),
                 ('{"format": "disttest-history", "version": 1, "events": [{"type": "begin",'
                  ' "id": 0, "f": "r", "time": 1}]}', "event 0 has type 'begin'; allowed: invoke"),
                 ('{"format": "disttest-history", "version": 1, "events": [{"type": "ok",'
                  ' "id": 0, "f": "r", "time": "noon"}]}', "event 0 has time 'noon'")]
        for content, expected in cases:
            with self.subTest(expected=expected):
                path = self._write(content)
                with self.assertRaises(HistoryFormatError) as caught:
                    History.load(path)
                self.assertIn(path, str(caught.exception))
                self.assertIn(expected, str(caught.exception))
        with self.assertRaises(HistoryFormatError) as caught:
            History.load(os.path.join(self.dir.name, "missing.json"))
        self.assertIn("cannot read the history", str(caught.exception))

    def test_a_history_written_by_another_program_is_checked(self):
        from disttest.history.checker import check_linearizable
        from disttest.history.models import Register
        events = [{"type": "invoke", "id": 1, "process": "a", "f": "write", "value": 1, "time": 0},
                  {"type": "ok", "id": 1, "process": "a", "f": "write", "time": 1},
                  {"type": "invoke", "id": 2, "process": "b", "f": "read", "time": 2},
                  {"type": "ok", "id": 2, "process": "b", "f": "read", "value": 0, "time": 3}]
        path = self._write(json.dumps({"format": "disttest-history", "version": 1,
                                       "events": events}))
        result = check_linearizable(History.load(path), Register(initial=0))
        self.assertEqual(result.result, "illegal")


if __name__ == "__main__":
    unittest.main()
