#!/usr/bin/env python3
"""Four data-parallel ranks, one SIGKILLed mid-run and all restarted with
--resume=auto, end bit for bit where an undisturbed 4-rank run ends.

Regression test for a bug the chaos soak found with W = 4: the first step
after a resume all-reduced its gradients in PyTorch's initial bucket layout
while the uninterrupted run used the layout rebuilt after its first step; in
a Gloo ring of more than two ranks the summation order of an element depends
on where its bucket puts it, so the resumed run drifted in the last bits
(two ranks cannot show it: a + b == b + a). Runs on 127.0.0.1; no root.

usage: four_ranks_resume_test.py RETORT_BINARY
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tools", "chaos"))

import corpus  # noqa: E402
import metrics  # noqa: E402
from procs import Clock, Proc  # noqa: E402

WORLD = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(retort, args, out, clock, logs, tag):
    port = free_port()
    ranks = []
    for r in range(WORLD):
        env = {"RANK": str(r), "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(r),
               "LOCAL_WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        ranks.append(Proc("%s-rank%d" % (tag, r), [retort] + args + ["--out_dir=" + out],
                          None, clock, logs, env))
    return ranks


def wait_all(ranks, timeout=240):
    codes = [p.wait(timeout) for p in ranks]
    for p in ranks:
        if p.running():
            p.kill_all()
    return codes


def main(retort):
    work = tempfile.mkdtemp(prefix="retort-four-ranks-")
    try:
        text = os.path.join(work, "text.txt")
        corpus.write_grammar_text(text)
        try:
            corpus.prepare(retort, text, os.path.join(work, "corpus"))
        except corpus.Unavailable as e:
            print("SKIP: %s" % e)
            return 77
        args = ["lm", "train", "--data=" + os.path.join(work, "corpus"), "--seq_len=32",
                "--batch_size=8", "--threads=1", "--blas_threads=1", "--seed=3",
                "--model=d=32,layers=1,heads=2,ffn=64", "--steps=60", "--lr=3e-3",
                "--log_every_steps=1", "--checkpoint_every_steps=10", "--dist_timeout=30",
                "--resume=auto"]
        clock = Clock()
        ref = os.path.join(work, "reference")
        codes = wait_all(start(retort, args, ref, clock, work, "reference"))
        if codes != [0] * WORLD:
            print("FAIL: the reference run exited %s" % codes)
            return 1
        out = os.path.join(work, "killed")
        ranks = start(retort, args, out, clock, work, "first")
        tail = metrics.MetricsTail(os.path.join(out, "metrics.jsonl"))
        end = time.monotonic() + 240
        while tail.poll() < 25 and time.monotonic() < end and ranks[0].running():
            time.sleep(0.01)
        ranks[2].signal(signal.SIGKILL)
        codes = wait_all(ranks)
        if codes[2] != -signal.SIGKILL or any(c != 1 for i, c in enumerate(codes) if i != 2):
            print("FAIL: after SIGKILL of rank 2 the ranks exited %s" % codes)
            return 1
        codes = wait_all(start(retort, args, out, clock, work, "resumed"))
        if codes != [0] * WORLD:
            print("FAIL: the resumed run exited %s" % codes)
            return 1
        shas = []
        for d in (ref, out):
            with open(os.path.join(d, "result.json")) as f:
                shas.append(json.load(f)["parameters_sha256"])
        if shas[0] != shas[1]:
            print("FAIL: resumed 4-rank run ends with %s, the undisturbed one with %s"
                  % (shas[1][:16], shas[0][:16]))
            return 1
        print("OK: 4 ranks resumed after a SIGKILL end bit for bit as undisturbed (%s)"
              % shas[0][:16])
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(64)
    sys.exit(main(sys.argv[1]))
