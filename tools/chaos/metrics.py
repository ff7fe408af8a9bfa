"""Reading a run's metrics.jsonl, and the step-accounting check.

Contract:
  * ``MetricsTail(path)`` follows a metrics.jsonl cheaply (reads only what was
    appended; starts over when the file is replaced or truncated, which Retort
    does when it resumes: it drops the lines past the checkpoint).
  * ``step_lines(text)`` returns {step: loss} for "event": "step" lines.
  * ``account(attempts, final, total_steps)`` checks, from every attempt's
    last metrics snapshot and the generation's final metrics, that each step
    1..total_steps was trained exactly once in the run that produced the
    final parameters, that no attempt resumed past what the previous one had
    logged (no skipped step), and that each step trained again after a
    restart (work redone) logged bit for bit the same loss as the first time.
"""

import json
import os


def step_lines(text):
    """{step: step_loss} of the "step" events in a metrics.jsonl text.

    Raises ValueError on a step logged twice in one file."""
    steps = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            j = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if j.get("event") != "step" or "step" not in j:
            continue
        s = int(j["step"])
        if s in steps:
            raise ValueError("step %d logged twice" % s)
        steps[s] = j.get("step_loss", j.get("loss"))
    return steps


class MetricsTail:
    def __init__(self, path):
        self.path = path
        self._ino = None
        self._offset = 0
        self._partial = ""
        self.last_step = 0

    def read_text(self):
        try:
            with open(self.path) as f:
                return f.read()
        except OSError:
            return ""

    def poll(self):
        """The newest step logged (0 before the first)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return self.last_step
        if st.st_ino != self._ino or st.st_size < self._offset:
            self._ino, self._offset, self._partial, self.last_step = st.st_ino, 0, "", 0
        if st.st_size == self._offset:
            return self.last_step
        with open(self.path) as f:
            f.seek(self._offset)
            chunk = f.read()
            self._offset = f.tell()
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("event") == "step":
                self.last_step = max(self.last_step, int(j["step"]))
        return self.last_step


def account(attempts, final_text, total_steps):
    """Step accounting for one generation (see module doc).

    `attempts`: [{"resumed_from": int, "metrics_text": str}] in order, the
    last being the one that finished. Returns a dict with "ok", "problems",
    "steps_trained" (including redone ones), "steps_redone", "final_steps".
    """
    problems = []
    first_loss = {}
    trained = redone = 0
    prev_last = 0
    for i, a in enumerate(attempts):
        try:
            steps = step_lines(a["metrics_text"])
        except ValueError as e:
            problems.append("attempt %d: %s" % (i + 1, e))
            continue
        start = a["resumed_from"]
        if start > prev_last:
            problems.append("attempt %d resumed from step %d but only %d were logged"
                            % (i + 1, start, prev_last))
        expected = set(range(1, max(steps) + 1)) if steps else set()
        if set(steps) != expected:
            problems.append("attempt %d: metrics are not steps 1..%d" % (i + 1, max(steps or [0])))
        for s, loss in steps.items():
            if s <= start:
                continue  # kept from an earlier attempt
            trained += 1
            if s in first_loss:
                redone += 1
                if first_loss[s] != loss:
                    problems.append("step %d redone in attempt %d with loss %r, first %r"
                                    % (s, i + 1, loss, first_loss[s]))
            else:
                first_loss[s] = loss
        prev_last = max(steps) if steps else start
    try:
        final = step_lines(final_text)
    except ValueError as e:
        final = {}
        problems.append("final metrics: %s" % e)
    if sorted(final) != list(range(1, total_steps + 1)):
        problems.append("final metrics hold %d distinct steps, not exactly 1..%d"
                        % (len(final), total_steps))
    for s, loss in final.items():
        if s in first_loss and first_loss[s] != loss:
            problems.append("final metrics: step %d loss %r, first trained with %r"
                            % (s, loss, first_loss[s]))
    return {"ok": not problems, "problems": problems, "steps_trained": trained,
            "steps_redone": redone, "final_steps": len(final)}
