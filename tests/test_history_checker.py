"""The linearizability checker, on histories whose verdict is known by construction.

Every history below is made by running real concurrent-looking clients
against a real object (tests/history_gen.py): such a history is always
linearizable. Changing one output in a way no order can explain makes it
never linearizable. The checker must say so, on every model, and name the
changed operation as the one that cannot be placed.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import random
import unittest

from disttest.history.checker import check_linearizable
from disttest.history.models import (CASRegister, Counter, FIFOQueue, KVMap, Model, Register,
                                     SetModel)
from disttest.history.operations import operations
from disttest.history.recorder import History
from tests.history_gen import generate, perturb


class AppendLog(Model):
    """A user model: an append-only log read whole."""

    operations = ("append", "read")

    def init(self):
        return ()

    def step(self, state, op):
        if op.f == "append":
            return True, state + (op.input,)
        return op.matches(state), state


MODELS = {"register": Register, "cas": CASRegister, "kv": KVMap, "set": SetModel,
          "counter": Counter, "queue": FIFOQueue, "log": AppendLog}
SEEDS = range(40)


def history_for(kind: str, seed: int):
    # A queue's state is the order of its elements, so concurrent enqueues of
    # unknown outcome multiply the configurations: smaller queue histories.
    if kind in ("queue", "log"):
        return generate(kind, seed, n_ops=24, clients=1 + seed % 3)
    return generate(kind, seed, clients=1 + seed % 6)


class GeneratedHistories(unittest.TestCase):
    def test_real_executions_are_linearizable(self):
        for kind, model in MODELS.items():
            for seed in SEEDS:
                with self.subTest(model=kind, seed=seed):
                    history = history_for(kind, seed)
                    result = check_linearizable(history, model())
                    self.assertEqual(result.result, "ok", result)
                    self.assertIs(result.valid, True)

    def test_perturbed_executions_are_not_linearizable(self):
        for kind, model in MODELS.items():
            perturbed = 0
            for seed in SEEDS:
                history = history_for(kind, seed)
                bad = perturb(kind, history, random.Random(seed))
                if bad is None:
                    continue
                perturbed += 1
                history, changed = bad
                with self.subTest(model=kind, seed=seed):
                    result = check_linearizable(history, model())
                    self.assertEqual(result.result, "illegal")
                    self.assertIs(result.valid, False)
                    (failure,) = result.failures
                    # The first completion no order can reach lies between the
                    # first change's invocation and the last change's completion
                    # (for a single changed output: it is that operation).
                    by_id = {op.id: op for op in result.ops}
                    self.assertGreaterEqual(failure.failed_op.ret,
                                            min(by_id[i].call for i in changed))
                    self.assertLessEqual(failure.failed_op.ret,
                                         max(by_id[i].ret for i in changed))
                    if len(changed) == 1:
                        self.assertEqual(failure.failed_op.id, changed[0])
                    self.assertIn(failure.failed_op, failure.window)
            self.assertGreaterEqual(perturbed, len(SEEDS) // 2, f"too few {kind} perturbations")

    def test_keys_are_checked_independently(self):
        history = generate("kv", 7, n_ops=200, clients=5, keys=10)
        result = check_linearizable(history, KVMap())
        self.assertEqual(result.result, "ok")
        self.assertEqual(len(result.keys), 10)
        bad, changed = perturb("kv", history, random.Random(0))
        result = check_linearizable(bad, KVMap())
        self.assertEqual([k.result for k in result.keys].count("illegal"), 1)
        self.assertEqual((result.failures[0].failed_op.id,), changed)


def _events(*ops):
    """Events from (client, f, key, input, output, status, call, ret) rows."""
    events = []
    for i, (client, f, key, value, output, status, call, ret) in enumerate(ops):
        events.append(("invoke", i, client, f, key, value, call))
        if status is not None:
            events.append((status, i, client, f, key, output, ret))
    return History(sorted(events, key=lambda e: e[6]))


class HandWrittenHistories(unittest.TestCase):
    def test_stale_read_reports_its_window_and_the_state_it_missed(self):
        history = _events((0, "write", "x", 1, None, "ok", 0, 1),
                          (0, "write", "x", 2, None, "ok", 2, 3),
                          (1, "read", "y", None, None, "ok", 2, 3),
                          (1, "read", "x", None, 1, "ok", 4, 5))
        result = check_linearizable(history, KVMap())
        (failure,) = result.failures
        self.assertEqual(failure.key, "x")
        self.assertEqual(failure.failed_op.describe(), "1: read('x') -> 1")
        self.assertEqual(failure.states, [2])
        self.assertEqual([op.id for op in failure.window], [0, 1, 3])

    def test_an_unknown_outcome_may_have_happened(self):
        # The write timed out ("info"), yet a later read sees it: linearizable.
        history = _events((0, "write", None, 1, "timeout", "info", 0, 1),
                          (1, "read", None, None, 1, "ok", 2, 3))
        self.assertEqual(check_linearizable(history, Register()).result, "ok")

    def test_an_unknown_outcome_may_also_never_have_happened(self):
        history = _events((0, "write", None, 1, "timeout", "info", 0, 1),
                          (1, "read", None, None, None, "ok", 2, 3))
        self.assertEqual(check_linearizable(history, Register()).result, "ok")

    def test_an_unknown_outcome_may_happen_late_but_not_twice(self):
        # Read 1, then 0, then 1: the info write of 1 cannot take effect twice.
        history = _events((0, "write", None, 1, None, "info", 0, 1),
                          (1, "read", None, None, 1, "ok", 2, 3),
                          (1, "read", None, None, None, "ok", 4, 5),
                          (1, "read", None, None, 1, "ok", 6, 7))
        result = check_linearizable(history, Register())
        self.assertEqual(result.result, "illegal")
        self.assertEqual(result.failures[0].failed_op.id, 2)

    def test_a_never_completed_operation_counts_as_unknown(self):
        history = _events((0, "write", None, 1, None, None, 0, None),
                          (1, "read", None, None, 1, "ok", 5, 6))
        result = check_linearizable(history, Register())
        self.assertEqual(result.result, "ok")
        self.assertEqual(result.ops[0].status, "info")
        self.assertEqual(result.ops[0].ret, math.inf)

    def test_an_unread_write_of_unknown_outcome_is_left_out_unless_a_cas_saw_not_it(self):
        rows = [(0, "write", None, 1, None, "ok", 0, 1),
                (1, "write", None, 2, "timeout", "info", 2, 3),   # 2 is never read
                (0, "read", None, None, 1, "ok", 4, 5)]
        ops = operations(_events(*rows))
        self.assertEqual([op.input for op in CASRegister().simplify(ops)], [1, None])
        # A cas that returned False observed "not 1": the timed-out write of 2
        # may be what it saw, so it stays.
        rows.append((2, "cas", None, (1, 3), False, "ok", 6, 7))
        history = _events(*rows)
        self.assertEqual(check_linearizable(history, CASRegister()).result, "ok")

    def test_failed_operations_did_not_happen(self):
        history = _events((0, "write", None, 1, "refused", "fail", 0, 1),
                          (1, "read", None, None, 1, "ok", 2, 3))
        self.assertEqual(check_linearizable(history, Register()).result, "illegal")

    def test_cas_outcomes(self):
        history = _events((0, "write", None, 1, None, "ok", 0, 1),
                          (0, "cas", None, (1, 2), None, "ok", 2, 3),
                          (1, "cas", None, (1, 3), False, "ok", 4, 5),
                          (1, "read", None, None, 2, "ok", 6, 7))
        self.assertEqual(check_linearizable(history, CASRegister()).result, "ok")
        history = _events((0, "write", None, 1, None, "ok", 0, 1),
                          (0, "cas", None, (5, 2), None, "ok", 2, 3))
        self.assertEqual(check_linearizable(history, CASRegister()).result, "illegal")

    def test_a_time_limit_gives_unknown_never_ok(self):
        # Many concurrent writes of distinct values and reads that order them
        # impossibly: exploring every order takes far longer than no time at all.
        rows = [(c, "write", None, c, None, "ok", 0, 100) for c in range(14)]
        rows += [(20 + c, "read", None, None, c, "ok", 0, 100) for c in range(14)]
        rows += [(40, "read", None, None, 99, "ok", 101, 102)]
        result = check_linearizable(_events(*rows), Register(), timeout=0)
        self.assertEqual(result.result, "unknown")
        self.assertIsNone(result.valid)
        self.assertIn("time limit", result.reason)

    def test_an_undecided_check_fails_the_assertion_unless_allowed(self):
        import tempfile

        from disttest.history.assertions import NonLinearizableError, assert_linearizable

        rows = [(c, "write", None, c, None, "ok", 0, 100) for c in range(14)]
        rows += [(20 + c, "read", None, None, c, "ok", 0, 100) for c in range(14)]
        rows += [(40, "read", None, None, 99, "ok", 101, 102)]
        history = _events(*rows)
        with tempfile.TemporaryDirectory() as tmp:
            output = io.StringIO()
            with self.assertRaises(NonLinearizableError) as caught, \
                    contextlib.redirect_stdout(output):
                assert_linearizable(history, Register(), timeout=0, name="t", directory=tmp)
            self.assertEqual(output.getvalue(),
                             f"[[ATTACHMENT|{os.path.join(tmp, 't.html')}]]\n")
            self.assertIn("linearizability against Register is unknown", str(caught.exception))
            self.assertIn("time limit of 0s", str(caught.exception))
            self.assertEqual(sorted(os.listdir(tmp)), ["t.html", "t.json"])
            result = assert_linearizable(history, Register(), timeout=0, allow_unknown=True,
                                         directory=tmp)
            self.assertEqual(result.result, "unknown")

    def test_an_unknown_operation_name_is_an_error_naming_the_model(self):
        history = _events((0, "wrtie", None, 1, None, "ok", 0, 1))
        with self.assertRaises(ValueError) as caught:
            check_linearizable(history, Register())
        self.assertIn("Register has no operation 'wrtie'", str(caught.exception))
        self.assertIn("read, write", str(caught.exception))

    def test_the_model_must_be_a_model(self):
        with self.assertRaises(TypeError) as caught:
            check_linearizable(History(), Register)
        self.assertIn("Model instance", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
