"""The fault schedule: which faults, when, how long, drawn from a seed.

Contract:
  * ``make_schedule(seed, duration, counts, start)`` returns the same list for
    the same arguments: faults sorted by nominal time, each kind's faults
    spread evenly over [start, duration) with a random offset inside each
    slot (so kinds overlap at random but none bunches up).
  * A fault's nominal time is when it becomes due; the soak injects it at the
    first moment after that when a target is free (a teacher with no other
    fault on it, a job that is training), so the real time is logged apart.
  * ``pick`` is a uniform draw in [0, 1) the soak uses to choose among the
    free targets, ``duration`` how long a reversible fault lasts, ``variant``
    a kind-specific choice (e.g. whether a rank is killed while it writes a
    checkpoint).
"""

import random

# Faults on one teacher at a time (a teacher carries at most one of these).
TEACHER_KINDS = ("teacher_kill", "teacher_stop", "partition", "dns_leave", "dns_join")
# Faults that stop the whole job (all ranks restarted with --resume=auto).
JOB_KINDS = ("preempt", "rank_kill", "disk_full")
# Applied to the newest checkpoint just before a restart.
RESTART_KINDS = ("checkpoint_corrupt",)
# An abusive client process SIGKILLed (all its streams disconnect at once).
CLIENT_KINDS = ("client_kill",)
ALL_KINDS = TEACHER_KINDS + JOB_KINDS + RESTART_KINDS + CLIENT_KINDS

# How long reversible faults last (seconds): long enough to be detected by a
# 1 s health check / a 5 s DNS re-resolution, short enough to repeat often.
DURATIONS = {
    "teacher_kill": (0.5, 2.0),  # delay before the "orchestrator" restarts it
    "teacher_stop": (3.0, 4.5),
    "partition": (3.0, 4.5),
    "dns_leave": (5.5, 7.0),
    "dns_join": (5.5, 7.0),  # how long the added teacher stays in DNS
    "preempt": (0.0, 0.0),
    "rank_kill": (0.0, 0.0),
    "disk_full": (0.0, 0.0),
    "checkpoint_corrupt": (0.0, 0.0),
    "client_kill": (0.0, 0.0),
}


class Fault:
    """One scheduled fault and, once injected, what was observed."""

    def __init__(self, fid, kind, at, duration, pick, variant):
        self.id = fid
        self.kind = kind
        self.at = at
        self.duration = duration
        self.pick = pick
        self.variant = variant
        # Filled in by the soak:
        self.injected_at = None
        self.ended_at = None  # when a reversible fault was undone
        self.target = None
        self.detected_at = None
        self.recovered_at = None
        self.work_redone_steps = None
        self.requests_resent = None
        self.recovery_from = None  # default: ended_at, else injected_at
        self.expected = []  # [{"what", "seen", "detail"}]
        self.notes = []
        self.done = False

    def to_json(self):
        def r(x):
            return None if x is None else round(x, 3)

        detection = (None if self.detected_at is None or self.injected_at is None
                     else r(self.detected_at - self.injected_at))
        recovery_from = self.recovery_from
        if recovery_from is None:
            recovery_from = self.ended_at if self.ended_at is not None else self.injected_at
        recovery = (None if self.recovered_at is None or recovery_from is None
                    else r(self.recovered_at - recovery_from))
        return {
            "id": self.id, "kind": self.kind, "variant": self.variant, "target": self.target,
            "due_at": r(self.at), "injected_at": r(self.injected_at), "ended_at": r(self.ended_at),
            "duration_planned": r(self.duration), "detected_at": r(self.detected_at),
            "recovered_at": r(self.recovered_at), "detection_s": detection,
            "recovery_s": recovery, "work_redone_steps": self.work_redone_steps,
            "requests_resent": self.requests_resent, "expected": self.expected,
            "notes": self.notes,
        }


def make_schedule(seed, duration, counts, start=5.0):
    """Faults for `counts` ({kind: n}) over [start, duration), from `seed`."""
    rng = random.Random(seed)
    faults = []
    for kind in ALL_KINDS:
        n = counts.get(kind, 0)
        if n <= 0:
            continue
        slot = (duration - start) / n
        lo, hi = DURATIONS[kind]
        for i in range(n):
            at = start + slot * (i + rng.random())
            variant = ""
            if kind == "rank_kill":
                variant = "while_checkpointing" if rng.random() < 0.5 else "mid_step"
            elif kind == "teacher_stop":
                variant = "sigstop"
            faults.append(Fault(0, kind, at, lo + (hi - lo) * rng.random(), rng.random(),
                                variant))
    faults.sort(key=lambda f: (f.at, f.kind))
    for i, f in enumerate(faults):
        f.id = i + 1
    return faults
