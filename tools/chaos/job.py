"""A data-parallel `retort lm train` job of W ranks, restarted as a scheduler would.

Contract:
  * Each rank runs in its own lab node with the torchrun environment
    (RANK, WORLD_SIZE, MASTER_ADDR = rank 0's node, a fresh MASTER_PORT per
    attempt, LOCAL_WORLD_SIZE=1: one rank a node). Every launch passes
    --resume=auto, as a Kubernetes Job or `srun --requeue` would restart it.
  * A generation is one complete training run in its own out_dir (the
    checkpoints directory optionally on a small tmpfs, so the disk can be
    filled). An attempt is one launch of all ranks. ``tick()`` notices exits;
    once any rank has exited the others get ``grace`` seconds, then SIGKILL
    (recorded: a rank that does not exit by itself is a finding). When all
    have exited, the attempt is closed with its exit codes and a snapshot of
    metrics.jsonl (Retort truncates it on resume, so this is the only record
    of steps later redone) and ``tick()`` returns "ended".
  * Not thread-safe; the soak's main loop owns it.
"""

import os
import re
import signal

import checkpoints
import metrics
from netlab import run
from procs import Proc

_RESUMED = re.compile(r"resuming from (\S+) \(state resumed from step (\d+)\)")


class Attempt:
    def __init__(self, index, started_at, port):
        self.index = index
        self.started_at = started_at
        self.port = port
        self.ranks = []
        self.resumed_from = 0
        self.resumed_dir = None
        self.first_step_at = None  # first step trained by this attempt
        self.ended_at = None
        self.first_exit_at = None
        self.exits = []
        self.killed_stragglers = []
        self.metrics_text = ""
        self.last_step = 0
        self.valid_before = {}  # checkpoint scan just before launch
        self.metrics_stamp = None  # metrics.jsonl's (inode, mtime, size) at launch
        self.cause = None  # the fault that ended it, if any

    def to_json(self):
        return {"index": self.index, "started_at": round(self.started_at, 3),
                "ended_at": None if self.ended_at is None else round(self.ended_at, 3),
                "resumed_from": self.resumed_from, "resumed_dir": self.resumed_dir,
                "last_step": self.last_step, "exits": self.exits,
                "killed_stragglers": self.killed_stragglers,
                "first_step_at": None if self.first_step_at is None else round(self.first_step_at, 3),
                "checkpoints_before": {str(k): v["valid"] for k, v in self.valid_before.items()},
                "cause": self.cause}


class Generation:
    def __init__(self, index, out_dir):
        self.index = index
        self.out_dir = out_dir
        self.attempts = []
        self.result = None  # result.json once finished
        self.final_metrics_text = ""
        self.mounted = None

    @property
    def checkpoint_dir(self):
        return os.path.join(self.out_dir, "checkpoints")


class Job:
    def __init__(self, name, retort, nodes, train_args, out_root, clock, log_dir,
                 master_addr, grace=30.0, tmpfs_mb=0, mount_tag="chaos"):
        self.name = name
        self.retort = retort
        self.nodes = nodes
        self.train_args = train_args
        self.out_root = out_root
        self.clock = clock
        self.log_dir = log_dir
        self.master_addr = master_addr
        self.grace = grace
        self.tmpfs_mb = tmpfs_mb
        self.mount_tag = mount_tag
        self.generations = []
        self.state = "idle"  # idle | running | stopping
        self.tail = None
        self._port = 29400

    @property
    def world(self):
        return len(self.nodes)

    @property
    def gen(self):
        return self.generations[-1] if self.generations else None

    @property
    def attempt(self):
        return self.gen.attempts[-1] if self.gen and self.gen.attempts else None

    def new_generation(self):
        g = Generation(len(self.generations) + 1,
                       os.path.join(self.out_root, "%s-gen%d" % (self.name, len(self.generations) + 1)))
        os.makedirs(g.checkpoint_dir, exist_ok=True)
        if self.tmpfs_mb > 0:
            run(["mount", "-t", "tmpfs", "-o", "size=%dm" % self.tmpfs_mb, self.mount_tag,
                 g.checkpoint_dir])
            g.mounted = g.checkpoint_dir
        self.generations.append(g)
        self.tail = metrics.MetricsTail(os.path.join(g.out_dir, "metrics.jsonl"))
        return g

    def launch(self):
        """Starts every rank of a new attempt of the current generation."""
        g = self.gen
        self._port = 29400 + (self._port - 29400 + 1) % 500
        a = Attempt(len(g.attempts) + 1, self.clock.now(), self._port)
        a.valid_before = checkpoints.scan(g.checkpoint_dir)
        a.metrics_stamp = _stamp(os.path.join(g.out_dir, "metrics.jsonl"))
        self.tail = metrics.MetricsTail(os.path.join(g.out_dir, "metrics.jsonl"))
        argv = [self.retort] + self.train_args + ["--out_dir=" + g.out_dir, "--resume=auto"]
        for r, node in enumerate(self.nodes):
            env = {"RANK": str(r), "WORLD_SIZE": str(self.world), "LOCAL_RANK": "0",
                   "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": self.master_addr,
                   "MASTER_PORT": str(self._port), "GROUP_RANK": str(r)}
            name = "%s-g%d-a%d-rank%d" % (self.name, g.index, a.index, r)
            a.ranks.append(Proc(name, argv, node, self.clock, self.log_dir, env))
        g.attempts.append(a)
        self.state = "running"
        return a

    def step(self):
        """The newest step logged in the current generation."""
        return self.tail.poll() if self.tail else 0

    def training(self):
        """True once the current attempt has trained a step of its own."""
        a = self.attempt
        return self.state == "running" and a is not None and a.first_step_at is not None

    def _trained_own_step(self, a):
        """Whether attempt `a` has logged a step it trained itself. Retort
        replaces metrics.jsonl when it starts (a fresh run deletes it, a
        resumed one rewrites it without the steps past its checkpoint), so
        lines in the file this attempt found at launch do not count."""
        if a.resumed_dir is None and checkpoints.newest_valid(a.valid_before) > 0:
            return False  # it will resume; wait for its "resuming from" line
        if _stamp(self.tail.path) == a.metrics_stamp:
            return False  # nobody has written it since the launch
        return self.step() > a.resumed_from

    def signal_all(self, sig):
        for p in self.attempt.ranks:
            p.signal(sig)

    def tick(self):
        """Advances the attempt; returns "ended" when its last rank exited."""
        a = self.attempt
        if a is None or self.state == "idle":
            return None
        if a.resumed_dir is None:
            for p in a.ranks[:1]:
                hit = p.find("resuming from")
                if hit:
                    m = _RESUMED.search(hit[1])
                    if m:
                        a.resumed_dir, a.resumed_from = m.group(1), int(m.group(2))
        if a.first_step_at is None and self._trained_own_step(a):
            a.first_step_at = self.clock.now()
        codes = [p.poll() for p in a.ranks]
        if all(c is None for c in codes):
            return None
        now = self.clock.now()
        if a.first_exit_at is None:
            a.first_exit_at = now
            self.state = "stopping"
        if any(c is None for c in codes):
            if now - a.first_exit_at < self.grace:
                return None
            for r, p in enumerate(a.ranks):
                if p.running():
                    a.killed_stragglers.append(r)
                    p.kill_all()
        self.step()
        a.exits = [p.poll() for p in a.ranks]
        a.ended_at = now
        a.metrics_text = self.tail.read_text()
        try:
            steps = metrics.step_lines(a.metrics_text)
        except ValueError:
            steps = {}
        a.last_step = max(steps) if steps else 0
        self.state = "idle"
        return "ended"

    def finish_generation(self):
        """Records result.json and the final metrics; unmounts the tmpfs."""
        import json
        g = self.gen
        try:
            with open(os.path.join(g.out_dir, "result.json")) as f:
                g.result = json.load(f)
        except (OSError, ValueError):
            g.result = None
        g.final_metrics_text = self.tail.read_text()
        self.unmount(g)

    def unmount(self, g):
        if g.mounted:
            run(["umount", "-l", g.mounted], check=False)
            g.mounted = None

    def kill(self):
        a = self.attempt
        if a:
            for p in a.ranks:
                p.kill_all()
        self.state = "idle"

    def close(self):
        self.kill()
        for g in self.generations:
            self.unmount(g)


def _stamp(path):
    """(inode, mtime, size): changes whenever the file is written or replaced
    (an inode number alone may be reused by a file deleted and recreated)."""
    try:
        st = os.stat(path)
        return st.st_ino, st.st_mtime_ns, st.st_size
    except OSError:
        return None


def model_sha256(out_dir):
    """SHA-256 of the exported model.safetensors (an independent check of the
    parameters beside result.json's parameters_sha256), or None."""
    import hashlib
    p = os.path.join(out_dir, "model", "model.safetensors")
    try:
        with open(p, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
