"""Unit tests of the chaos harness's pure parts: the seeded schedule, step
accounting over restarts, and checkpoint verification. No root needed.

Run: PYTHONPATH=tools/chaos python3 -m unittest discover -s tests/chaos -p 'test_*.py'
"""

import hashlib
import json
import os
import random
import tempfile
import unittest

import checkpoints
import metrics
import schedule


def step_line(step, loss):
    return json.dumps({"event": "step", "step": step, "step_loss": loss}) + "\n"


class ScheduleTest(unittest.TestCase):
    def test_same_seed_same_schedule_and_counts(self):
        counts = {k: 5 for k in schedule.ALL_KINDS}
        a = schedule.make_schedule(3, 100, counts)
        b = schedule.make_schedule(3, 100, counts)
        self.assertEqual([(f.kind, f.at, f.duration, f.pick, f.variant) for f in a],
                         [(f.kind, f.at, f.duration, f.pick, f.variant) for f in b])
        self.assertNotEqual([f.at for f in a],
                            [f.at for f in schedule.make_schedule(4, 100, counts)])
        for kind in schedule.ALL_KINDS:
            times = [f.at for f in a if f.kind == kind]
            self.assertEqual(len(times), 5)
            # One per slot of (100 - 5) / 5 s: spread, never bunched.
            for i, t in enumerate(sorted(times)):
                self.assertGreaterEqual(t, 5 + 19 * i)
                self.assertLess(t, 5 + 19 * (i + 1))
        self.assertEqual([f.id for f in a], list(range(1, len(a) + 1)))


class AccountTest(unittest.TestCase):
    def test_restarts_with_redone_steps_account_exactly_once(self):
        first = "".join(step_line(s, 1.0 / s) for s in range(1, 8))  # killed after 7
        second = "".join(step_line(s, 1.0 / s) for s in range(1, 11))  # resumed from 5
        r = metrics.account([{"resumed_from": 0, "metrics_text": first},
                             {"resumed_from": 5, "metrics_text": second}], second, 10)
        self.assertTrue(r["ok"], r["problems"])
        self.assertEqual(r["steps_redone"], 2)  # steps 6 and 7
        self.assertEqual(r["steps_trained"], 12)

    def test_a_redone_step_with_another_loss_is_reported(self):
        first = "".join(step_line(s, 1.0) for s in range(1, 8))
        second = "".join(step_line(s, 1.0 if s != 6 else 2.0) for s in range(1, 11))
        r = metrics.account([{"resumed_from": 0, "metrics_text": first},
                             {"resumed_from": 5, "metrics_text": second}], second, 10)
        self.assertFalse(r["ok"])
        self.assertTrue(any("step 6 redone" in p for p in r["problems"]), r["problems"])

    def test_a_skipped_or_missing_step_is_reported(self):
        first = "".join(step_line(s, 1.0) for s in range(1, 4))
        second = "".join(step_line(s, 1.0) for s in range(1, 11))
        r = metrics.account([{"resumed_from": 0, "metrics_text": first},
                             {"resumed_from": 5, "metrics_text": second}], second, 10)
        self.assertTrue(any("resumed from step 5 but only 3" in p for p in r["problems"]))
        short = "".join(step_line(s, 1.0) for s in range(1, 10))
        r = metrics.account([{"resumed_from": 0, "metrics_text": short}], short, 10)
        self.assertFalse(r["ok"])

    def test_a_step_logged_twice_in_one_file_is_reported(self):
        text = step_line(1, 1.0) + step_line(2, 1.0) + step_line(2, 1.0)
        with self.assertRaises(ValueError):
            metrics.step_lines(text)

    def test_tail_follows_appends_and_replacements(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "metrics.jsonl")
            with open(p, "w") as f:
                f.write(step_line(1, 1.0) + step_line(2, 1.0))
            tail = metrics.MetricsTail(p)
            self.assertEqual(tail.poll(), 2)
            with open(p, "a") as f:
                f.write(step_line(3, 1.0) + '{"event": "st')  # a torn line
            self.assertEqual(tail.poll(), 3)
            tmp = p + ".new"
            with open(tmp, "w") as f:
                f.write(step_line(1, 1.0))
            os.rename(tmp, p)  # as Retort's resume rewrites it
            self.assertEqual(tail.poll(), 1)


class CheckpointsTest(unittest.TestCase):
    def write(self, root, step, payload=b"weights"):
        d = os.path.join(root, "ckpt-%012d" % step)
        os.makedirs(d)
        with open(os.path.join(d, "training.pt"), "wb") as f:
            f.write(payload)
        manifest = {"step": step, "files": {"training.pt": {
            "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}}}
        with open(os.path.join(d, "MANIFEST.json"), "w") as f:
            json.dump(manifest, f)
        return d

    def test_verify_and_corrupt(self):
        with tempfile.TemporaryDirectory() as root:
            self.write(root, 10)
            self.write(root, 20)
            os.makedirs(os.path.join(root, ".staging-000000000030"))
            scanned = checkpoints.scan(root)
            self.assertEqual(sorted(scanned), [10, 20])
            self.assertEqual(checkpoints.newest_valid(scanned), 20)
            self.assertEqual(checkpoints.corrupt_newest(root, random.Random(1)),
                             (20, "training.pt"))
            scanned = checkpoints.scan(root)
            self.assertFalse(scanned[20]["valid"])
            self.assertIn("sha256", scanned[20]["why"])
            self.assertEqual(checkpoints.newest_valid(scanned), 10)
            # The last complete one is never corrupted.
            self.assertIsNone(checkpoints.corrupt_newest(root, random.Random(1)))

    def test_missing_manifest_or_file_fails_verification(self):
        with tempfile.TemporaryDirectory() as root:
            d = self.write(root, 5)
            os.unlink(os.path.join(d, "training.pt"))
            self.assertEqual(checkpoints.verify(d), (False, "training.pt missing"))
            d = self.write(root, 6)
            os.unlink(os.path.join(d, "MANIFEST.json"))
            ok, why = checkpoints.verify(d)
            self.assertFalse(ok)
            self.assertIn("manifest", why)


if __name__ == "__main__":
    unittest.main()
