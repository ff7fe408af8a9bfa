"""Injecting each kind of fault and judging what Retort did about it.

Contract: for every kind, ``inject(soak, fault)`` returns False when no target
is free right now (the soak tries again on its next tick), else injects it,
fills ``fault.target``/``injected_at`` and the documented expectations
(``fault.expected``: what log line or exit code must appear), and returns
True. ``update(soak, fault)`` is called on every tick until it sets
``fault.done``: it undoes reversible faults after their duration, and
records detection (the first trainer log line that shows the fault was
noticed), recovery (the line or step that shows it is over) and work redone.

Documented outcomes (docs/deploy.md, "What to expect under each fault"):
  teacher_kill  teacher exits -9; trainers log "<addr> out of service" and,
                once it is back, "<addr> serving"; unanswered requests are
                re-sent to the others (no step is lost or repeated)
  teacher_stop  (SIGSTOP) trainers log "<addr> out of service" (failed health
                check or keepalive), then "<addr> serving" after SIGCONT
  partition     (switch port down) the same two lines
  dns_leave     trainers log "<addr> left the pool"; after it is back in DNS
                "<addr> joined" and "<addr> serving"
  dns_join      a new teacher in DNS: "<addr> joined", "<addr> serving"; taken
                out of DNS again: "<addr> left the pool"; SIGTERM: it drains
                and exits 0
  preempt       SIGTERM to every rank: each exits 75, rank 0 logs "preempted:
                ... continue with --resume=auto"; no step is redone
  rank_kill     SIGKILL to one rank: the others exit 1 naming "restart them all
                with --resume=auto"; steps since the last checkpoint are redone
  disk_full     the checkpoint filesystem fills: a rank exits 1 with "No space
                left on device", the others exit 1; after space is freed the
                restart resumes from the newest complete checkpoint
  checkpoint_corrupt  a byte of the newest checkpoint flipped before a
                restart: rank 0 logs "skipping checkpoint of step N" and
                resumes from an older complete one
  client_kill   an abusive client process SIGKILLed: the teacher goes on
                serving everyone else
"""

import errno
import os
import re
import signal

import checkpoints

FILLER = ".chaos-disk-filler"
DETECTION_TIMEOUT = 30.0  # seconds after which an unseen line counts as missing
_RESENT = re.compile(r"re-sending (\d+) unanswered")


# How long after its cause a trainer line may take (seconds): a broken stream
# is seen at once, a frozen or unplugged teacher by the 1 s health check
# (1 s timeout), DNS changes at the next re-resolution (every 5 s), a teacher
# back in service by the prober's backoff (at most 2 s) plus one check.
BUDGET_OUT_OF_SERVICE = 4.0
BUDGET_DNS = 7.0
BUDGET_SERVING = 5.0


def expect(fault, what, window=None, budget=0.0):
    """Adds an expectation. `window` says when it is observable at all:
    None (an exit code: always), "start" (a trainer attempt must have been up
    throughout [injected, injected + budget]) or "end" (trainer attempts must
    have been up for `budget` seconds within DETECTION_TIMEOUT after the fault
    ended). An unseen expectation that was not observable is recorded as
    seen=None ("not observable") rather than as a failure."""
    fault.expected.append({"what": what, "seen": None, "detail": "", "window": window,
                           "budget": budget})
    return len(fault.expected) - 1


def close_expectations(soak, fault):
    """Settles every unseen expectation: failed if it was observable."""
    for e in fault.expected:
        if e.get("settled"):
            continue
        e["settled"] = True
        window, budget = e.get("window"), e.get("budget", 0.0)
        if window == "start" and fault.injected_at is not None:
            observable = soak.alive_throughout(fault.injected_at, fault.injected_at + budget)
        elif window == "removal":
            observable = soak.alive_throughout(fault.ended_at, fault.ended_at + budget,
                                               knowing=fault._teacher.address)
        elif window == "end":
            end = fault.ended_at if fault.ended_at is not None else fault.injected_at
            observable = soak.alive_overlap(end, end + DETECTION_TIMEOUT) >= budget
        else:
            observable = True
        if observable:
            e["seen"] = False
        else:
            e["detail"] = ("not observable: no trainer attempt was up for %.0f s around the "
                           "fault (the job was restarting)" % budget)


def settle(fault, index, seen, detail=""):
    """Records an expectation's outcome; seen=None marks it not observable."""
    fault.expected[index]["seen"] = seen
    fault.expected[index]["settled"] = True
    if detail:
        fault.expected[index]["detail"] = detail


def rank_line(soak, needle, since, also=None):
    """The first (t, line) any trainer rank logged at/after `since`."""
    best = None
    if since == float("inf"):
        return None
    for p in soak.rank_procs(since):
        hit = p.find(needle, since, also)
        if hit and (best is None or hit[0] < best[0]):
            best = hit
    return best


def _free_teacher(soak, fault, allow_long_lived, need_dns=False):
    if not soak.job.training():
        return None
    candidates = [t for t in soak.pool if t.fault is None and t.serving()
                  and soak.pool_serving(t.address)
                  and (allow_long_lived or not soak.is_long_lived_slot(t))
                  and (not need_dns or t in soak.dns.members)]
    if not candidates:
        return None
    return candidates[int(fault.pick * len(candidates))]


def _teacher_lines(soak, fault, t, since_detect, since_recover):
    """Shared detection/recovery for faults that take a teacher out of service."""
    if fault.detected_at is None:
        hit = rank_line(soak, t.address + " out of service", since_detect)
        if hit is None and since_detect != float("inf"):
            # A trainer attempt started during the fault never saw it serving:
            # its prober logs "<addr>: <why>" instead.
            hit = rank_line(soak, t.address + ": ", since_detect)
            if hit and fault.ended_at is not None and hit[0] > fault.ended_at:
                hit = None
        if hit:
            fault.detected_at = hit[0]
            m = _RESENT.search(hit[1])
            fault.requests_resent = int(m.group(1)) if m else 0
            settle(fault, fault._i_detect, True, hit[1][:200])
    if since_recover is not None and fault.recovered_at is None:
        hit = rank_line(soak, t.address + " serving", since_recover)
        if hit:
            fault.recovered_at = hit[0]
            settle(fault, fault._i_recover, True, hit[1][:200])


def _close_teacher_fault(soak, fault, t, now, force=False):
    """Ends the watch once both lines are seen or the timeout passed."""
    base = fault.ended_at if fault.ended_at is not None else fault.injected_at
    # Detection can no longer come once the fault is over and the teacher is
    # back (or the attempt that could have seen it is gone): close then.
    if force or fault.recovered_at is not None or now - base > DETECTION_TIMEOUT:
        close_expectations(soak, fault)
        fault.done = True
        t.fault = None


# ---- teacher_kill -----------------------------------------------------------

def inject_teacher_kill(soak, fault):
    t = _free_teacher(soak, fault, allow_long_lived=False)
    if t is None:
        return False
    t.fault = fault
    fault.target = t.name
    fault._teacher = t
    fault._proc = t.proc
    fault.injected_at = soak.clock.now()
    t.proc.signal(signal.SIGKILL)
    fault._i_exit = expect(fault, "teacher exits -9 (SIGKILL)")
    fault._i_detect = expect(fault, "trainer logs '%s out of service'" % t.address, "start",
                             BUDGET_OUT_OF_SERVICE)
    fault._i_recover = expect(fault, "trainer logs '%s serving' after the restart" % t.address,
                              "end", BUDGET_SERVING)
    return True


def update_teacher_kill(soak, fault):
    now = soak.clock.now()
    t = fault._teacher
    if fault.ended_at is None:
        code = fault._proc.poll()
        if code is not None and now >= fault.injected_at + fault.duration:
            settle(fault, fault._i_exit, code == -signal.SIGKILL, "exit %d" % code)
            t.start()  # the orchestrator restarts the pod
            fault.ended_at = now
    _teacher_lines(soak, fault, t, fault.injected_at, fault.ended_at)
    if fault.ended_at is not None:
        _close_teacher_fault(soak, fault, t, now)


# ---- teacher_stop / partition -------------------------------------------------

def inject_teacher_stop(soak, fault):
    t = _free_teacher(soak, fault, allow_long_lived=True)
    if t is None:
        return False
    t.fault = fault
    fault.target = t.name
    fault._teacher = t
    fault.injected_at = soak.clock.now()
    t.proc.signal(signal.SIGSTOP)
    fault._i_detect = expect(fault, "trainer logs '%s out of service'" % t.address, "start",
                             BUDGET_OUT_OF_SERVICE)
    fault._i_recover = expect(fault, "trainer logs '%s serving' after SIGCONT" % t.address, "end",
                              BUDGET_SERVING)
    fault._i_alive = expect(fault, "teacher process survives SIGSTOP/SIGCONT")
    return True


def update_teacher_stop(soak, fault):
    now = soak.clock.now()
    t = fault._teacher
    if fault.ended_at is None and now >= fault.injected_at + fault.duration:
        t.proc.signal(signal.SIGCONT)
        fault.ended_at = now
    _teacher_lines(soak, fault, t, fault.injected_at, fault.ended_at)
    if fault.ended_at is not None:
        settle(fault, fault._i_alive, t.proc.running())
        _close_teacher_fault(soak, fault, t, now)


def inject_partition(soak, fault):
    t = _free_teacher(soak, fault, allow_long_lived=True)
    if t is None:
        return False
    t.fault = fault
    fault.target = t.name
    fault._teacher = t
    fault.injected_at = soak.clock.now()
    soak.lab.set_link(t.node, False)
    fault._i_detect = expect(fault, "trainer logs '%s out of service'" % t.address, "start",
                             BUDGET_OUT_OF_SERVICE)
    fault._i_recover = expect(fault, "trainer logs '%s serving' after the link is back"
                              % t.address, "end", BUDGET_SERVING)
    return True


def update_partition(soak, fault):
    now = soak.clock.now()
    t = fault._teacher
    if fault.ended_at is None and now >= fault.injected_at + fault.duration:
        soak.lab.set_link(t.node, True)
        fault.ended_at = now
    _teacher_lines(soak, fault, t, fault.injected_at, fault.ended_at)
    if fault.ended_at is not None:
        _close_teacher_fault(soak, fault, t, now)


# ---- dns_leave / dns_join -----------------------------------------------------

def inject_dns_leave(soak, fault):
    t = _free_teacher(soak, fault, allow_long_lived=True, need_dns=True)
    if t is None:
        return False
    t.fault = fault
    fault.target = t.name
    fault._teacher = t
    fault.injected_at = soak.clock.now()
    soak.dns.remove(t)
    fault._i_detect = expect(fault, "trainer logs '%s left the pool'" % t.address, "start",
                             BUDGET_DNS)
    fault._i_recover = expect(fault, "trainer logs '%s serving' once it is back in DNS"
                              % t.address, "end", BUDGET_DNS)
    return True


def update_dns_leave(soak, fault):
    now = soak.clock.now()
    t = fault._teacher
    if fault.detected_at is None:
        hit = rank_line(soak, t.address + " left the pool", fault.injected_at)
        if hit:
            fault.detected_at = hit[0]
            settle(fault, fault._i_detect, True, hit[1][:200])
    if fault.ended_at is None and now >= fault.injected_at + fault.duration:
        soak.dns.add(t)
        fault.ended_at = now
    if fault.ended_at is not None:
        _teacher_lines(soak, fault, t, float("inf"), fault.ended_at)
        _close_teacher_fault(soak, fault, t, now)


def inject_dns_join(soak, fault):
    idle = [t for t in soak.elastic if t.fault is None and not t.running()]
    if not idle:
        return False
    t = idle[int(fault.pick * len(idle))]
    t.fault = fault
    fault.target = t.name
    fault._teacher = t
    fault._phase = "starting"
    fault._started = soak.clock.now()
    t.start()
    fault._i_detect = expect(fault, "trainer logs '%s joined' (or 'serving')" % t.address,
                             "start", BUDGET_DNS)
    fault._i_recover = expect(fault, "trainer logs '%s serving' (work goes to it)" % t.address,
                              "start", BUDGET_DNS + BUDGET_SERVING)
    fault._i_left = expect(fault, "trainer logs '%s left the pool' once out of DNS" % t.address,
                           "removal", BUDGET_DNS)
    fault._i_exit = expect(fault, "the removed teacher drains on SIGTERM and exits 0")
    # Injected (in the soak's sense) once it is in DNS; see update.
    fault.injected_at = soak.clock.now()
    fault.recovery_from = None
    return True


def update_dns_join(soak, fault):
    now = soak.clock.now()
    t = fault._teacher
    if fault._phase == "starting":
        if t.serving():
            soak.dns.add(t)
            fault.injected_at = now
            fault.recovery_from = now
            fault._phase = "in_dns"
        elif not t.running() or now - fault._started > 60:
            fault.notes.append("the added teacher did not start: %s" % t.proc.text()[-300:])
            t.proc.kill_all()
            fault._phase = "stopping"
        return
    if fault._phase == "in_dns":
        if fault.detected_at is None:
            hit = rank_line(soak, t.address + " joined", fault.injected_at) or \
                rank_line(soak, t.address + " serving", fault.injected_at)
            if hit:
                fault.detected_at = hit[0]
                settle(fault, fault._i_detect, True, hit[1][:200])
        if fault.recovered_at is None:
            hit = rank_line(soak, t.address + " serving", fault.injected_at)
            if hit:
                fault.recovered_at = hit[0]
                settle(fault, fault._i_recover, True, hit[1][:200])
        if now >= fault.injected_at + fault.duration:
            soak.dns.remove(t)
            fault.ended_at = now
            fault._phase = "leaving"
        return
    if fault._phase == "leaving":
        hit = rank_line(soak, t.address + " left the pool", fault.ended_at)
        if hit:
            settle(fault, fault._i_left, True, hit[1][:200])
            fault._left_at = hit[0]
        if hit or now - fault.ended_at > BUDGET_DNS + 3.0:
            t.proc.signal(signal.SIGTERM)
            fault._term_at = now
            fault._phase = "stopping"
        return
    if fault._phase == "stopping":
        code = t.proc.poll()
        if code is None and now - getattr(fault, "_term_at", now) > 20:
            t.proc.kill_all()
            code = t.proc.poll()
        if code is not None:
            settle(fault, fault._i_exit, code == 0, "exit %d" % code)
            close_expectations(soak, fault)
            fault.done = True
            t.fault = None


# ---- job faults: preempt, rank_kill, disk_full --------------------------------

def _job_free(soak):
    return soak.job.training() and soak.job_fault is None and soak.restart_at is None


def inject_preempt(soak, fault):
    if not _job_free(soak):
        return False
    soak.job_fault = fault
    fault.target = "all ranks"
    fault.injected_at = soak.clock.now()
    fault._attempt = soak.job.attempt
    fault._step_at_fault = soak.job.step()
    soak.job.signal_all(signal.SIGTERM)
    fault._i_exit = expect(fault, "every rank exits 75 within the grace period")
    fault._i_line = expect(fault, "rank 0 logs 'preempted: ... continue with --resume=auto'")
    fault._i_redo = expect(fault, "the step it stopped after is checkpointed (nothing to redo)")
    return True


def inject_rank_kill(soak, fault):
    if not _job_free(soak):
        return False
    if fault.variant == "while_checkpointing":
        # Wait (bounded) for a checkpoint being written, then kill.
        if not hasattr(fault, "_waiting_since"):
            fault._waiting_since = soak.clock.now()
        staging = [n for n in _listdir(soak.job.gen.checkpoint_dir) if n.startswith(".staging-")]
        if not staging and soak.clock.now() - fault._waiting_since < 3.0:
            return False
        if not staging:
            fault.notes.append("no checkpoint was being written within 3 s; killed mid-step")
        else:
            fault.notes.append("killed while %s existed" % staging[0])
    soak.job_fault = fault
    ranks = soak.job.attempt.ranks
    r = int(fault.pick * len(ranks))
    fault.target = "rank %d" % r
    fault._rank = r
    fault.injected_at = soak.clock.now()
    fault._attempt = soak.job.attempt
    fault._step_at_fault = soak.job.step()
    ranks[r].signal(signal.SIGKILL)
    fault._i_exit = expect(fault, "the killed rank exits -9, every other rank exits 1")
    fault._i_line = expect(fault, "the other ranks log 'restart them all with --resume=auto'")
    return True


def inject_disk_full(soak, fault):
    if not _job_free(soak):
        return False
    soak.job_fault = fault
    g = soak.job.gen
    fault.target = g.checkpoint_dir
    fault.injected_at = soak.clock.now()
    fault._attempt = soak.job.attempt
    fault._step_at_fault = soak.job.step()
    fault._filler = os.path.join(g.checkpoint_dir, FILLER)
    written = _fill(fault._filler)
    fault.notes.append("filled with %d bytes" % written)
    fault._i_exit = expect(fault, "a rank exits 1 naming 'No space left on device', the others exit 1")
    fault._i_resume = expect(fault, "after space is freed the restart resumes from the newest complete checkpoint")
    return True


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _fill(path):
    """Writes zeros to `path` until the filesystem is full; returns bytes written."""
    written = 0
    block = b"\0" * (64 << 10)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(block) > 1:
                    block = block[: len(block) // 2]
                    continue
                break
            written += n
    return written


def judge_job_fault_end(soak, fault, attempt):
    """Called when the attempt the job fault hit has ended (all ranks exited)."""
    fault.detected_at = attempt.first_exit_at
    exits = attempt.exits
    texts = [p.text() for p in attempt.ranks]
    if all(c == 0 for c in exits):
        # The fault hit the last steps: the run completed (and wrote its
        # result) before the signal or the full disk could stop it.
        for e in fault.expected:
            if not e.get("settled"):
                settle(fault, fault.expected.index(e), None,
                       "not observable: the run finished before the fault took effect")
        if fault.kind == "disk_full":
            try:
                os.unlink(fault._filler)
            except OSError:
                pass
            fault.ended_at = soak.clock.now()
        return
    if fault.kind == "preempt":
        settle(fault, fault._i_exit, all(c == 75 for c in exits) and not attempt.killed_stragglers,
               "exits %s" % exits)
        line = next((l for l in texts[0].splitlines() if "preempted:" in l), "")
        settle(fault, fault._i_line, "continue with --resume=auto" in line, line[:200])
        scanned = checkpoints.scan(soak.job.gen.checkpoint_dir)
        entry = scanned.get(attempt.last_step)
        settle(fault, fault._i_redo, entry is not None and entry["valid"],
               "stopped after step %d; checkpoint of that step %s" % (
                   attempt.last_step, "valid" if entry and entry["valid"] else
                   (entry["why"] if entry else "missing")))
    elif fault.kind == "rank_kill":
        others = [c for r, c in enumerate(exits) if r != fault._rank]
        settle(fault, fault._i_exit,
               exits[fault._rank] == -signal.SIGKILL and all(c == 1 for c in others),
               "exits %s" % exits)
        lines = [next((l for l in t.splitlines() if "restart them all with --resume=auto" in l), "")
                 for r, t in enumerate(texts) if r != fault._rank]
        settle(fault, fault._i_line, all(lines), (lines[0] if lines else "")[:240])
    elif fault.kind == "disk_full":
        full = [r for r, t in enumerate(texts) if "No space left on device" in t]
        settle(fault, fault._i_exit, bool(full) and all(c == 1 for c in exits),
               "exits %s; 'No space left on device' from rank(s) %s" % (exits, full))
        if all(c == 0 for c in exits):
            fault.notes.append("the job finished before it wrote a checkpoint")
        try:
            os.unlink(fault._filler)  # the operator frees space
        except OSError:
            pass
        fault.ended_at = soak.clock.now()


def judge_job_fault_recovered(soak, fault, ended, resumed):
    """Called once the attempt after the fault trains its first step."""
    fault.recovered_at = resumed.first_step_at
    fault.recovery_from = fault.injected_at
    fault.work_redone_steps = max(0, ended.last_step - resumed.resumed_from)
    if fault.kind == "preempt" and fault.work_redone_steps:
        fault.notes.append("redone steps: a checkpoint_corrupt fault removed the stop checkpoint")
    if fault.kind == "disk_full":
        newest = checkpoints.newest_valid(resumed.valid_before)
        settle(fault, fault._i_resume, resumed.resumed_from == newest,
               "resumed from %d, newest complete %d" % (resumed.resumed_from, newest))
    fault.done = True


# ---- checkpoint_corrupt (applied by the soak just before a restart) ---------

def apply_checkpoint_corrupt(soak, fault, rng):
    # Only with an older complete checkpoint to fall back on: corrupting the
    # last one would restart the run from step 0 each time and starve it.
    hit = checkpoints.corrupt_newest(soak.job.gen.checkpoint_dir, rng, keep_valid=1)
    if hit is None:
        return False  # try at the next restart
    fault.injected_at = soak.clock.now()
    step, name = hit
    fault.target = "ckpt-%012d/%s" % (step, name)
    fault._step = step
    fault._i_line = expect(fault, "rank 0 logs 'skipping checkpoint of step %d'" % step)
    fault._i_older = expect(fault, "the restart resumes from an older complete checkpoint")
    return True


def judge_checkpoint_corrupt(soak, fault, resumed):
    hit = None
    for p in resumed.ranks[:1]:
        hit = p.find("skipping checkpoint of step %d" % fault._step)
    if hit:
        fault.detected_at = hit[0]
        settle(fault, fault._i_line, True, hit[1][:240])
    else:
        settle(fault, fault._i_line, False)
    settle(fault, fault._i_older, resumed.resumed_from < fault._step,
           "resumed from %d" % resumed.resumed_from)
    fault.recovered_at = resumed.first_step_at
    fault.recovery_from = fault.injected_at
    fault.work_redone_steps = None  # counted with the fault that stopped the job
    fault.done = True


# ---- client_kill ----------------------------------------------------------------

def inject_client_kill(soak, fault):
    live = [c for c in soak.stress_procs if c.running()]
    if not live:
        return False
    c = live[int(fault.pick * len(live))]
    fault.target = c.name
    fault.injected_at = soak.clock.now()
    c.signal(signal.SIGKILL)
    code = c.wait(5)
    fault._i_exit = expect(fault, "client exits -9; the teacher keeps serving the others")
    settle(fault, fault._i_exit, code == -signal.SIGKILL, "exit %s" % code)
    fault.ended_at = soak.clock.now()
    fault.done = True
    soak.restart_stress_client(c)
    return True


INJECT = {
    "teacher_kill": inject_teacher_kill, "teacher_stop": inject_teacher_stop,
    "partition": inject_partition, "dns_leave": inject_dns_leave, "dns_join": inject_dns_join,
    "preempt": inject_preempt, "rank_kill": inject_rank_kill, "disk_full": inject_disk_full,
    "client_kill": inject_client_kill,
}
UPDATE = {
    "teacher_kill": update_teacher_kill, "teacher_stop": update_teacher_stop,
    "partition": update_partition, "dns_leave": update_dns_leave, "dns_join": update_dns_join,
}


def abort(soak, fault):
    """Ends an active teacher fault early (the job has finished): undoes it and
    settles what was not seen by coverage."""
    t = getattr(fault, "_teacher", None)
    now = soak.clock.now()
    if fault.kind == "teacher_stop" and fault.ended_at is None:
        t.proc.signal(signal.SIGCONT)
        fault.ended_at = now
        settle(fault, fault._i_alive, t.proc.running())
    elif fault.kind == "partition" and fault.ended_at is None:
        soak.lab.set_link(t.node, True)
        fault.ended_at = now
    elif fault.kind == "dns_leave" and fault.ended_at is None:
        soak.dns.add(t)
        fault.ended_at = now
    elif fault.kind == "teacher_kill" and fault.ended_at is None:
        code = fault._proc.wait(5)
        settle(fault, fault._i_exit, code == -signal.SIGKILL, "exit %s" % code)
        t.start()
        fault.ended_at = now
    elif fault.kind == "dns_join":
        soak.dns.remove(t)
        if fault.ended_at is None:
            fault.ended_at = now
        if t.proc.running():
            t.proc.signal(signal.SIGTERM)
            code = t.proc.wait(20)
            if code is None:
                t.proc.kill_all()
            settle(fault, fault._i_exit, code == 0, "exit %s" % code)
    close_expectations(soak, fault)
    fault.notes.append("ended early: the job had finished")
    fault.done = True
    if t is not None:
        t.fault = None
