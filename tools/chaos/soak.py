#!/usr/bin/env python3
"""Soak Retort under overlapping faults on a cluster of network namespaces.

Builds a small cluster on this machine (tools/chaos/netlab.py): N teacher
servers, spare teachers that join and leave through DNS, W trainer ranks of
`retort lm train` distilling from the pool (--teachers=dns:///...), each in
its own namespace with its own address behind one bridge; an undisturbed
reference run of the same job beside it; and abusive clients (64 streams
with cancellations, deadlines and disconnects) on one long-lived teacher.
Then it injects a seeded schedule of faults (tools/chaos/schedule.py,
tools/chaos/faults.py), restarts the job with --resume=auto whenever it
stops (as Kubernetes or Slurm would), runs it to the end, and checks:

  * final parameters bit-identical to the undisturbed run (every generation)
  * every step trained exactly once (metrics.jsonl), redone steps identical
  * no checkpoint that fails verification was ever resumed from
  * long-lived teachers' RSS, threads and open fds grow < 5 %
  * every fault produced its documented log line and exit code
  * the abused teacher answered identically throughout
  * at least --min_per_kind faults of every kind that can be injected here

Writes a JSON report (--report) and a human summary beside it (.txt), and a
progress line every few seconds. Exit: 0 all checks passed, 1 a check failed
or the soak aborted, 77 this machine cannot run it (not root, no ip).
Everything it creates (namespaces, veths, bridge, tmpfs mounts, processes,
/etc/netns entries) is removed on exit, on failure and on SIGTERM/SIGINT; a
run killed outright is swept by the next one (stale owner pid).

Example (the CTest soak):
  sudo tools/chaos/soak.py --retort=build/retort \\
      --stress_client=build/tests/chaos/chaos_stress_client --preset=short
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import corpus  # noqa: E402
import faults  # noqa: E402
import netlab  # noqa: E402
import schedule  # noqa: E402
from job import Job, model_sha256  # noqa: E402
from procs import Clock, Proc  # noqa: E402
from teachers import Dns, Teacher  # noqa: E402

PRESETS = {
    # CTest: 160 s of faults (extended up to 230 s on a slow machine until
    # every kind reached 20), about 4 minutes in all.
    "short": {"duration": 160, "ranks": 2, "teachers": 4, "elastic": 3, "steps": 600,
              "per_kind": 24, "min_per_kind": 20, "stress_procs": 2, "streams": 64,
              "tmpfs_mb": 8, "max_wall": 420, "pause_ms": 500, "duration_cap": 230},
    # docs/results.md: 30 minutes, W=4, N=4.
    "long": {"duration": 1800, "ranks": 4, "teachers": 4, "elastic": 2, "steps": 6000,
             "per_kind": 60, "min_per_kind": 20, "stress_procs": 2, "streams": 64,
             "tmpfs_mb": 16, "max_wall": 2500, "pause_ms": 500, "duration_cap": 1860},
}

NOT_INJECTABLE = [
    {"fault": "packet delay, loss, reordering, bandwidth limits (netem)",
     "why": "this kernel has no sch_netem; see 'netem_probe' for the error tc gave"},
    {"fault": "packet filtering partitions (one direction, one port)",
     "why": "neither iptables nor nft is installed; partitions take a switch port down instead "
            "(both directions, every port)"},
    {"fault": "a trainer rank's link taken down",
     "why": "not scheduled: a rank cut off mid-collective waits --dist_timeout (Gloo has no "
            "keepalive) and then fails like rank_kill; teacher partitions are injected"},
]


def log(msg):
    print("[soak] " + msg, flush=True)


class Soak:
    def __init__(self, args, clock):
        self.args = args
        self.clock = clock
        self.rng = random.Random(args.seed + 7)
        self.lab = None
        self.pool = []
        self.elastic = []
        self.all_teachers = []
        self.dns = None
        self.job = None
        self.ref_job = None
        self.ref_teacher = None
        self.job_fault = None
        self.restart_at = None
        self.pending_corrupt = None
        self.stress_procs = []
        self.stress_reports = []
        self.stress_seq = 0
        self.findings = []
        self.restarts = []  # (t, attempt index) of every relaunch
        self.faults = []
        self.chaos_done = False
        self.ref_done = False
        self.fault_end = None
        self.netem_probe = ""

    # -- helpers used by faults.py ------------------------------------------
    def rank_procs(self, since=0.0):
        """Every trainer rank process that was alive at or after `since`."""
        procs = []
        for g in self.job.generations:
            for a in g.attempts:
                procs += [p for p in a.ranks if p.exited_at is None or p.exited_at >= since]
        return procs

    def is_long_lived_slot(self, teacher):
        return teacher is self.pool[0]

    def alive_windows(self):
        """(start, end) of every chaos attempt while all its ranks ran."""
        now = self.clock.now()
        out = []
        for g in self.job.generations:
            for a in g.attempts:
                end = a.first_exit_at if a.first_exit_at is not None else now
                out.append((a.started_at, end))
        return out

    def alive_throughout(self, t0, t1, knowing=None):
        """Whether one chaos attempt ran over all of [t0, t1] (and, with
        `knowing`, had that teacher serving in its pool at t0)."""
        now = self.clock.now()
        for g in self.job.generations:
            for a in g.attempts:
                end = a.first_exit_at if a.first_exit_at is not None else now
                if a.started_at <= t0 and end >= t1:
                    if knowing is None or self.pool_serving(knowing, a, t0):
                        return True
        return False

    def pool_serving(self, address, attempt=None, at=None):
        """Whether rank 0 of `attempt` (default: the current one) last logged
        `address` as serving (at or before `at`)."""
        a = attempt or self.job.attempt
        if a is None:
            return False
        state = False
        for t, line in a.ranks[0].snapshot():
            if at is not None and t > at:
                break
            if address not in line or not line.startswith("[teacher pool]"):
                continue
            if address + " serving" in line:
                state = True
            elif (address + " out of service") in line or (address + " left") in line or \
                    (address + ": ") in line or (address + " probing") in line:
                state = False
        return state

    def alive_overlap(self, t0, t1):
        return max([min(e, t1) - max(s, t0) for s, e in self.alive_windows()] + [0.0])

    def restart_stress_client(self, old):
        if self.clock.now() < self.fault_end - 2:
            self.start_stress_client(old._slot)

    # -- setup -----------------------------------------------------------------
    def prepare_data(self, work):
        data = os.path.join(work, "data")
        os.makedirs(data, exist_ok=True)
        corpus.write_grammar_text(os.path.join(data, "text.txt"))
        r = self.args.retort
        corpus.prepare(r, os.path.join(data, "text.txt"), os.path.join(data, "corpus"))
        argv = [r, "lm", "train", "--data=" + os.path.join(data, "corpus"), "--seq_len=32",
                "--batch_size=8", "--threads=1", "--blas_threads=1", "--seed=11",
                "--model=d=32,layers=1,heads=2,ffn=64", "--steps=30", "--log_every_steps=10",
                "--out_dir=" + os.path.join(data, "teacher"), "--overwrite"]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            raise RuntimeError("retort lm train failed: " + p.stdout[-2000:])
        return os.path.join(data, "corpus"), os.path.join(data, "teacher", "model")

    def train_args(self, corpus, teachers):
        a = self.args
        return ["lm", "train", "--data=" + corpus, "--seq_len=32", "--batch_size=8",
                "--threads=1", "--blas_threads=1", "--seed=%d" % a.seed,
                "--model=d=32,layers=1,heads=2,ffn=64", "--steps=%d" % a.steps, "--lr=3e-3",
                "--log_every_steps=1", "--checkpoint_every_steps=%d" % a.checkpoint_every,
                "--keep_checkpoints=3", "--dist_timeout=%d" % a.dist_timeout,
                "--teachers=" + teachers, "--top_k=16", "--temperature=1", "--alpha=0.5",
                "--teacher_keepalive=5", "--teacher_wait=300", "--eval_sequences=32"]

    def start_stress_client(self, slot):
        self.stress_seq += 1
        a = self.args
        name = "stress%d-%d" % (slot, self.stress_seq)
        report = os.path.join(self.work, "stress", name + ".json")
        remaining = max(1.0, self.fault_end - self.clock.now())
        argv = [a.stress_client, "--target=" + self.pool[0].address,
                "--streams=%d" % (a.streams // a.stress_procs), "--duration_s=%.1f" % remaining,
                "--seed=%d" % (a.seed * 100 + self.stress_seq), "--report=" + report,
                "--pause_ms=%d" % a.pause_ms]
        p = Proc(name, argv, self.stress_node, self.clock, self.log_dir)
        p._slot = slot
        self.stress_procs.append(p)
        self.stress_reports.append((name, report))
        return p

    def rest_samples(self, teachers, wait, before=False):
        """After `wait` s, samples each teacher 6 times over 6 s and keeps
        the least threads/fds (and the RSS of that sample) as its at-rest
        figure (idle_before or idle_after)."""
        time.sleep(wait)
        seen = {t.name: [] for t in teachers}
        for _ in range(6):
            for t in teachers:
                s = t.sample()
                if s is not None:
                    seen[t.name].append(s)
            time.sleep(1.0)
        for t in teachers:
            rows = seen[t.name]
            best = None
            if rows and all(r[0] == rows[0][0] for r in rows):
                best = (rows[0][0], {k: min(r[1][k] for r in rows)
                                     for k in ("rss_kb", "threads", "fds")},
                        t.proc.thread_names())
            if before:
                t.idle_before = best
            else:
                t.idle_after = best

    def warm_up(self):
        """Brings every long-lived teacher to its working set before the at-rest
        baseline: 64 abusive streams on t0, 8 on the others, for a few
        seconds, one stop/continue, then a rest (gRPC starts threads and
        buffers on first use; the resource check is about what the run adds
        after that)."""
        procs = []
        for i, t in enumerate(self.pool + [self.ref_teacher]):
            node = self.stress_node if t is not self.ref_teacher else t.node
            report = os.path.join(self.work, "stress", "warmup-%s.json" % t.name)
            procs.append(Proc("warmup-" + t.name, [
                self.args.stress_client, "--target=" + t.address,
                "--streams=%d" % (self.args.streams if i == 0 else 8), "--duration_s=10",
                "--seed=%d" % (500 + i), "--report=" + report,
                "--pause_ms=%d" % self.args.pause_ms], node, self.clock, self.log_dir))
        # One SIGSTOP/SIGCONT of each pool teacher under that load: a stopped
        # process finds its gRPC timers overdue on waking and gRPC's timer
        # pool grows to its bounded size (3 waiting threads), as the soak's
        # teacher_stop faults will make it anyway.
        time.sleep(1.0)
        for t in self.pool:
            t.proc.signal(signal.SIGSTOP)
        time.sleep(1.5)
        for t in self.pool:
            t.proc.signal(signal.SIGCONT)
        for p in procs:
            if p.wait(60) != 0:
                raise RuntimeError("warm-up client failed: " + p.text()[-500:])
        time.sleep(3.0)

    def probe_netem(self, node):
        p = netlab.run(["ip", "netns", "exec", node.ns, "tc", "qdisc", "add", "dev", "eth0",
                        "root", "netem", "delay", "10ms"], check=False)
        if p.returncode == 0:
            netlab.run(["ip", "netns", "exec", node.ns, "tc", "qdisc", "del", "dev", "eth0",
                        "root"], check=False)
            return "netem works here (not used by this soak)"
        return p.stdout.strip() or "exit %d" % p.returncode

    def setup(self):
        a = self.args
        self.work = os.path.abspath(a.work_dir)
        for sub in ("logs", "stress", "runs", "teachers"):
            shutil.rmtree(os.path.join(self.work, sub), ignore_errors=True)
            os.makedirs(os.path.join(self.work, sub))
        self.log_dir = os.path.join(self.work, "logs")
        log("preparing data and a teacher in %s" % self.work)
        corpus, teacher_model = self.prepare_data(self.work)
        self.lab = netlab.Lab()
        log("lab %s: bridge in %s" % (self.lab.tag, self.lab.hub))
        tdir = os.path.join(self.work, "teachers")
        for i in range(a.teachers):
            t = Teacher("t%d" % i, self.lab.add_node("t%d" % i, 10 + i), a.retort, teacher_model,
                        self.clock, self.log_dir, tdir)
            self.pool.append(t)
        for i in range(a.elastic):
            t = Teacher("e%d" % i, self.lab.add_node("e%d" % i, 30 + i), a.retort, teacher_model,
                        self.clock, self.log_dir, tdir, elastic=True)
            self.elastic.append(t)
        rank_nodes = [self.lab.add_node("r%d" % r, 50 + r) for r in range(a.ranks)]
        self.stress_node = self.lab.add_node("s0", 70)
        ref_node = self.lab.add_node("ref", 90)
        self.ref_teacher = Teacher("ref-teacher", ref_node, a.retort, teacher_model, self.clock,
                                   self.log_dir, tdir)
        self.all_teachers = self.pool + self.elastic + [self.ref_teacher]
        self.netem_probe = self.probe_netem(self.stress_node)
        self.dns = Dns(self.lab, "teachers.chaos", rank_nodes)
        for t in self.pool + [self.ref_teacher]:
            t.start()
        end = time.monotonic() + 90
        while not all(t.serving() for t in self.pool + [self.ref_teacher]):
            if time.monotonic() > end or any(not t.running() for t in self.pool):
                raise RuntimeError("teachers did not start: " + " | ".join(
                    t.proc.text()[-500:] for t in self.pool + [self.ref_teacher]))
            time.sleep(0.1)
        for t in self.pool:
            self.dns.add(t)
        log("%d teachers serving at %s (DNS %s), %d spare" % (
            len(self.pool), ", ".join(t.address for t in self.pool), self.dns.target(),
            len(self.elastic)))
        runs = os.path.join(self.work, "runs")
        self.ref_job = Job("reference", a.retort, [ref_node] * a.ranks,
                           self.train_args(corpus, self.ref_teacher.address), runs, self.clock,
                           self.log_dir, master_addr="127.0.0.1", grace=a.grace)
        self.job = Job("chaos", a.retort, rank_nodes, self.train_args(corpus, self.dns.target()),
                       runs, self.clock, self.log_dir, master_addr=rank_nodes[0].ip,
                       grace=a.grace, tmpfs_mb=a.tmpfs_mb, mount_tag=self.lab.mount_tag())

    # -- the run -----------------------------------------------------------------
    def run(self):
        a = self.args
        counts = {k: a.per_kind for k in schedule.ALL_KINDS}
        self.faults = schedule.make_schedule(a.seed, a.duration, counts, start=a.warmup)
        self.warm_up()
        self.rest_samples(self.pool + [self.ref_teacher], wait=0.0, before=True)
        self.clock.t0 = time.monotonic()  # t = 0: faults start counting from here
        self.fault_end = a.duration
        for slot in range(a.stress_procs):
            self.start_stress_client(slot)
        self.ref_job.new_generation()
        self.ref_job.launch()
        self.job.new_generation()
        self.job.launch()
        self.restarts.append((self.clock.now(), 1))
        log("schedule: %d faults over %ds (seed %d); reference and chaos jobs started, "
            "%d ranks each, %d steps" % (len(self.faults), a.duration, a.seed, a.ranks, a.steps))
        next_sample = next_progress = 0.0
        while True:
            now = self.clock.now()
            if now > a.max_wall:
                raise RuntimeError("the soak ran past --max_wall=%ds" % a.max_wall)
            if now >= next_sample:
                for t in self.all_teachers:
                    t.sample()
                next_sample = now + 2.0
            self.tick_reference()
            self.tick_job(now)
            self.top_up(now)
            self.tick_faults(now)
            if now >= next_progress:
                self.progress(now)
                next_progress = now + 5.0
            active = [f for f in self.faults if f.injected_at is not None and not f.done
                      and f.kind in faults.UPDATE]
            if self.chaos_done:
                for f in active:
                    faults.abort(self, f)
                active = []
            if self.chaos_done and self.ref_done and not active and not any(
                    p.running() for p in self.stress_procs):
                break
            time.sleep(0.05)
        self.progress(self.clock.now())

    def top_up(self, now):
        """At the end of --duration, while some kind has fewer than
        --min_per_kind injected (a slow machine restarts slowly), extends the
        fault period by 10 s at a time, up to --duration_cap, with one more
        fault of each lacking kind (drawn from the same seed)."""
        a = self.args
        if now < self.fault_end or self.fault_end >= a.duration_cap or self.chaos_done:
            return
        counts = {k: 0 for k in schedule.ALL_KINDS}
        for f in self.faults:
            if f.injected_at is not None and f.target is not None:
                counts[f.kind] += 1
        lacking = [k for k, n in counts.items() if n < a.min_per_kind]
        if not lacking:
            return
        self.fault_end = min(a.duration_cap, self.fault_end + 10.0)
        pending = {f.kind for f in self.faults if f.injected_at is None}
        extra = [k for k in lacking if k not in pending]
        if extra:
            more = schedule.make_schedule(a.seed * 1000 + int(now), self.fault_end,
                                          {k: 1 for k in extra}, start=now)
            for f in more:
                f.id = len(self.faults) + 1
                self.faults.append(f)
        log("top-up: %s below %d; faults go on until t=%.0fs" % (
            ", ".join("%s %d" % (k, counts[k]) for k in lacking), a.min_per_kind, self.fault_end))

    def tick_reference(self):
        if self.ref_done:
            return
        if self.ref_job.tick() == "ended":
            att = self.ref_job.attempt
            if any(c != 0 for c in att.exits):
                raise RuntimeError("the undisturbed reference run failed (exits %s): %s" % (
                    att.exits, att.ranks[0].text()[-1500:]))
            self.ref_job.finish_generation()
            self.ref_done = True
            log("reference run finished in %.1fs: %s" % (
                att.ended_at - att.started_at,
                (self.ref_job.gen.result or {}).get("parameters_sha256")))

    def tick_job(self, now):
        job = self.job
        if self.chaos_done:
            return
        if job.tick() == "ended":
            self.on_attempt_end(now)
        if self.restart_at is not None and now >= self.restart_at:
            self.relaunch(now)
        att = job.attempt
        f = self.job_fault
        if f is not None and getattr(f, "_ended", False) and att is not f._attempt \
                and att.first_step_at is not None:
            faults.judge_job_fault_recovered(self, f, f._attempt, att)
            self.job_fault = None
        c = self.pending_corrupt
        if c is not None and att.first_step_at is not None and att is c._after:
            faults.judge_checkpoint_corrupt(self, c, att)
            self.pending_corrupt = None

    def on_attempt_end(self, now):
        job = self.job
        att = job.attempt
        f = self.job_fault
        if f is not None and not getattr(f, "_ended", False):
            faults.judge_job_fault_end(self, f, att)
            f._ended = True
            att.cause = f.id
        if att.killed_stragglers:
            self.findings.append("gen %d attempt %d: ranks %s did not exit within %.0fs of the "
                                 "first exit and were killed" % (job.gen.index, att.index,
                                                                 att.killed_stragglers, job.grace))
        if all(c == 0 for c in att.exits):
            job.finish_generation()
            log("generation %d finished after %d attempts: %s" % (
                job.gen.index, len(job.gen.attempts),
                (job.gen.result or {}).get("parameters_sha256")))
            if f is not None and f._attempt is att:
                f.notes.append("the job finished before the fault took effect")
                f.done = True
                self.job_fault = None
            if now < self.fault_end:
                job.new_generation()
                job.launch()
                self.restarts.append((self.clock.now(), 1))
            else:
                self.chaos_done = True
            return
        if att.cause is None:
            tail = [p.text().splitlines()[-3:] for p in att.ranks]
            self.findings.append("gen %d attempt %d stopped without an injected job fault: exits "
                                 "%s; last lines %s" % (job.gen.index, att.index, att.exits, tail))
        self.restart_at = now + self.args.restart_backoff

    def relaunch(self, now):
        self.restart_at = None
        if self.pending_corrupt is None:
            due = [f for f in self.faults if f.kind == "checkpoint_corrupt" and f.injected_at is None
                   and f.at <= now and now < self.fault_end]
            if due and faults.apply_checkpoint_corrupt(self, due[0], self.rng):
                self.pending_corrupt = due[0]
        att = self.job.launch()
        if self.pending_corrupt is not None and not hasattr(self.pending_corrupt, "_after"):
            self.pending_corrupt._after = att
        self.restarts.append((self.clock.now(), att.index))

    def tick_faults(self, now):
        for f in self.faults:
            if f.done:
                continue
            if f.injected_at is None:
                # checkpoint_corrupt is applied by relaunch(), at a restart.
                if f.kind == "checkpoint_corrupt" or f.at > now or now >= self.fault_end \
                        or self.chaos_done:
                    continue
                faults.INJECT[f.kind](self, f)
            elif f.kind in faults.UPDATE:
                faults.UPDATE[f.kind](self, f)

    def progress(self, now):
        job = self.job
        injected = sum(1 for f in self.faults if f.injected_at is not None and f.target)
        active = sum(1 for f in self.faults if f.injected_at is not None and not f.done)
        serving = sum(1 for t in self.pool + self.elastic if t.serving())
        log("t=%5.0fs gen %d step %d/%d attempts %d | faults %d/%d injected, %d active | "
            "teachers serving %d, in DNS %d | ref %s" % (
                now, job.gen.index if job.gen else 0, job.step(), self.args.steps,
                len(job.gen.attempts) if job.gen else 0, injected, len(self.faults), active,
                serving, len(self.dns.members),
                "done" if self.ref_done else "step %d" % self.ref_job.step()))

    # -- the end -----------------------------------------------------------------
    def final_probe(self):
        report = os.path.join(self.work, "stress", "final-probe.json")
        p = Proc("final-probe", [self.args.stress_client, "--target=" + self.pool[0].address,
                                 "--streams=4", "--duration_s=3", "--seed=999",
                                 "--report=" + report], self.stress_node, self.clock, self.log_dir)
        p.wait(60)
        return _read_json(report)

    def evaluate(self):
        a = self.args
        t_end = self.fault_end
        gens = [g for g in self.job.generations if g.result is not None]
        probe = self.final_probe()
        # Every client gone: the teachers at rest again (gRPC retires idle
        # threads after a moment; take the least of a few samples).
        self.rest_samples(self.pool + [self.ref_teacher], wait=2.0)
        result = [
            checks.parameters(self.ref_job.gen, gens, model_sha256),
            checks.steps(gens, a.steps),
            checks.resumes(self.job.generations),
            # RSS baseline after at least a minute of the soak's load (the
            # allocator's arenas fill up over the first minute of 64 streams).
            checks.teacher_resources(self.pool + [self.ref_teacher],
                                     max(0.1 * a.duration, min(60.0, 0.4 * a.duration)),
                                     t_end),
            checks.faults_observed(self.faults),
            checks.fault_counts(self.faults, schedule.ALL_KINDS, a.min_per_kind),
            checks.stress([(n, _read_json(p)) for n, p in self.stress_reports], probe),
            checks.check("no unexplained stop and no rank that had to be killed",
                         not self.findings, len(self.findings), "; ".join(self.findings[:5])),
        ]
        return result

    def summarize_faults(self):
        by_kind = {}
        for f in self.faults:
            if f.injected_at is None or f.target is None:
                continue
            j = f.to_json()
            k = by_kind.setdefault(f.kind, {"injected": 0, "detection_s": [], "recovery_s": [],
                                            "work_redone_steps": [], "requests_resent": [],
                                            "not_applicable": 0})
            k["injected"] += 1
            for key in ("detection_s", "recovery_s", "work_redone_steps", "requests_resent"):
                if j[key] is not None:
                    k[key].append(j[key])
            k["not_applicable"] += sum(1 for e in f.expected if e["seen"] is None)
        out = {}
        for kind, k in by_kind.items():
            row = {"injected": k["injected"], "expectations_not_applicable": k["not_applicable"]}
            for key in ("detection_s", "recovery_s", "work_redone_steps", "requests_resent"):
                v = k[key]
                row[key] = ({"n": len(v), "median": round(statistics.median(v), 3),
                             "p90": round(sorted(v)[int(0.9 * (len(v) - 1))], 3),
                             "max": round(max(v), 3), "mean": round(statistics.mean(v), 3)}
                            if v else None)
            out[kind] = row
        return out


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--retort", required=True, help="the retort binary")
    p.add_argument("--stress_client", required=True,
                   help="chaos_stress_client (built from tests/chaos/stress_client.cc)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="short",
                   help="sizes and counts; flags below override them")
    p.add_argument("--seed", type=int, default=1, help="fault schedule and training seed")
    p.add_argument("--work_dir", default="", help="scratch (default /tmp/retort-chaos-<pid>)")
    p.add_argument("--report", default="", help="JSON report (default <work_dir>/report.json)")
    for name, typ, help_ in (
        ("duration", float, "seconds during which faults are injected"),
        ("duration_cap", float, "longest the fault period may be extended to reach "
                                "--min_per_kind of every kind"),
        ("ranks", int, "W: trainer ranks, one namespace each"),
        ("teachers", int, "N: teachers in the pool (t0 is never killed: the long-lived one)"),
        ("elastic", int, "spare teachers that join and leave through DNS"),
        ("steps", int, "optimizer steps of each training run (generation)"),
        ("per_kind", int, "faults of each kind in the schedule"),
        ("min_per_kind", int, "the count check's minimum per kind"),
        ("stress_procs", int, "abusive client processes (their streams add up to --streams)"),
        ("streams", int, "abusive streams on t0 in all"),
        ("tmpfs_mb", int, "size of the checkpoint filesystem that gets filled"),
        ("max_wall", float, "hard limit on the soak's own time, seconds"),
        ("pause_ms", int, "each abusive stream pauses 0..this between calls"),
    ):
        p.add_argument("--" + name, type=typ, default=None, help=help_)
    p.add_argument("--checkpoint_every", type=int, default=10, help="--checkpoint_every_steps")
    p.add_argument("--dist_timeout", type=int, default=30, help="ranks' --dist_timeout")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds ranks get to exit after the first one did, then SIGKILL")
    p.add_argument("--restart_backoff", type=float, default=0.3,
                   help="seconds between a job's stop and its restart")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the first fault")
    args = p.parse_args(argv)
    for k, v in PRESETS[args.preset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not args.work_dir:
        args.work_dir = "/tmp/retort-chaos-%d" % os.getpid()
    if not args.report:
        args.report = os.path.join(args.work_dir, "report.json")
    return args


def human_summary(report):
    lines = ["Retort chaos soak: %s" % ("PASS" if report["passed"] else "FAIL"),
             "command: %s" % report["command"],
             "cluster: %d ranks, %d teachers + %d spare, %ds of faults, %d faults injected" % (
                 report["config"]["ranks"], report["config"]["teachers"],
                 report["config"]["elastic"], report["config"]["duration"],
                 report["faults_injected"]), ""]
    lines.append("%-20s %5s  %-22s %-22s %-14s" % ("fault", "n", "detection s (med/max)",
                                                   "recovery s (med/max)", "redone (med/max)"))
    for kind, row in sorted(report["by_kind"].items()):
        def mm(x):
            return "-" if x is None else "%.2f / %.2f" % (x["median"], x["max"])
        lines.append("%-20s %5d  %-22s %-22s %-14s" % (kind, row["injected"], mm(row["detection_s"]),
                                                        mm(row["recovery_s"]),
                                                        mm(row["work_redone_steps"])))
    lines.append("")
    for c in report["checks"]:
        lines.append("[%s] %s%s" % ("ok" if c["ok"] else "FAIL", c["name"],
                                    (": " + c["detail"]) if c["detail"] else ""))
    for n in report["not_injectable"]:
        lines.append("not injected: %s (%s)" % (n["fault"], n["why"]))
    if report.get("error"):
        lines.append("ERROR: " + report["error"])
    return "\n".join(lines) + "\n"


def main(argv):
    args = parse_args(argv)
    why = netlab.available()
    if why:
        print("SKIP: " + why, file=sys.stderr)
        return 77
    for path in (args.retort, args.stress_client):
        if not os.access(path, os.X_OK):
            print("no executable %s" % path, file=sys.stderr)
            return 1
    args.retort = os.path.abspath(args.retort)
    args.stress_client = os.path.abspath(args.stress_client)
    stale = netlab.sweep_stale()
    if stale:
        log("removed what stale runs left: %s" % ", ".join(stale))
    os.makedirs(args.work_dir, exist_ok=True)

    def on_signal(signum, _frame):
        raise SystemExit("stopped by signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    clock = Clock()
    soak = Soak(args, clock)
    error = None
    results = []
    wall0 = time.time()
    try:
        soak.setup()
        soak.run()
        results = soak.evaluate()
    except BaseException as e:  # noqa: B902 - cleanup and a report on every way out
        error = "%s: %s" % (type(e).__name__, e)
        log("ABORTED: " + error)
    finally:
        for p in soak.stress_procs:
            p.kill_all()
        for j in (soak.job, soak.ref_job):
            if j is not None:
                j.close()
        for t in soak.all_teachers:
            if t.proc is not None:
                t.proc.signal(signal.SIGCONT)
                t.proc.kill_all()
        if soak.lab is not None:
            soak.lab.close()
    report = {
        "passed": error is None and bool(results) and all(c["ok"] for c in results),
        "error": error,
        "command": " ".join([os.path.relpath(sys.argv[0])] + argv),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall0)),
        "wall_seconds": round(time.time() - wall0, 1),
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count()},
        "config": {k: getattr(args, k) for k in (
            "preset", "seed", "duration", "duration_cap", "ranks", "teachers", "elastic", "steps", "per_kind",
            "min_per_kind", "stress_procs", "streams", "pause_ms", "tmpfs_mb", "checkpoint_every",
            "dist_timeout", "grace")},
        "netem_probe": soak.netem_probe,
        "not_injectable": NOT_INJECTABLE,
        "faults_injected": sum(1 for f in soak.faults if f.injected_at is not None and f.target),
        "by_kind": soak.summarize_faults() if soak.faults else {},
        "checks": results,
        "findings": soak.findings,
        "generations": [
            {"index": g.index, "finished": g.result is not None,
             "parameters_sha256": (g.result or {}).get("parameters_sha256"),
             "attempts": [a.to_json() for a in g.attempts]}
            for g in (soak.job.generations if soak.job else [])],
        "reference": ({"parameters_sha256": (soak.ref_job.gen.result or {}).get("parameters_sha256"),
                       "seconds": (soak.ref_job.attempt.ended_at or 0) - soak.ref_job.attempt.started_at}
                      if soak.ref_job and soak.ref_job.gen and soak.ref_job.attempt else None),
        "teacher_samples": {t.name: [[round(s[0], 1), s[1], s[2]["rss_kb"], s[2]["threads"],
                                      s[2]["fds"]] for s in t.samples]
                            for t in soak.all_teachers},
        "faults": [f.to_json() for f in soak.faults],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
    with open(args.report, "w") as f:
        json.dump(report, f, indent=1)
    text = human_summary(report)
    with open(os.path.splitext(args.report)[0] + ".txt", "w") as f:
        f.write(text)
    sys.stdout.write(text)
    log("report: %s" % args.report)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
