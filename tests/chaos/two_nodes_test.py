#!/usr/bin/env python3
"""Two trainer ranks on two "nodes" (network namespaces with their own
addresses behind a bridge) train together, and exactly as on one host.

Regression test for a bug the chaos soak found: every rank bound Gloo's
device to MASTER_ADDR, which is rank 0's address, so a rank on any other
node failed with "Cannot resolve <MASTER_ADDR> to a (local) address".

usage: two_nodes_test.py RETORT_BINARY   (root; exits 77 to skip otherwise)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tools", "chaos"))

import corpus  # noqa: E402
import netlab  # noqa: E402
from procs import Clock, Proc  # noqa: E402


def main(retort):
    why = netlab.available()
    if why:
        print("SKIP: " + why)
        return 77
    netlab.sweep_stale()
    work = tempfile.mkdtemp(prefix="retort-two-nodes-")
    try:
        text = os.path.join(work, "text.txt")
        corpus.write_grammar_text(text)
        try:
            corpus.prepare(retort, text, os.path.join(work, "corpus"))
        except corpus.Unavailable as e:
            print("SKIP: %s" % e)
            return 77
        args = ["lm", "train", "--data=" + os.path.join(work, "corpus"), "--seq_len=16",
                "--batch_size=4", "--threads=1", "--blas_threads=1", "--seed=2",
                "--model=d=16,layers=1,heads=2,ffn=32", "--steps=6", "--log_every_steps=1",
                "--dist_timeout=60"]
        clock = Clock()
        results = {}
        with netlab.Lab(subnet="10.232.0") as lab:
            nodes = [lab.add_node("n%d" % r, 10 + r) for r in range(2)]
            for where, rank_nodes, master in (("two_nodes", nodes, nodes[0].ip),
                                              ("one_node", [nodes[0]] * 2, "127.0.0.1")):
                out = os.path.join(work, where)
                ranks = []
                for r, node in enumerate(rank_nodes):
                    env = {"RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                           "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": master,
                           "MASTER_PORT": "29611"}
                    ranks.append(Proc("%s-rank%d" % (where, r),
                                      [retort] + args + ["--out_dir=" + out], node, clock,
                                      work, env))
                codes = [p.wait(180) for p in ranks]
                for p in ranks:
                    if p.running():
                        p.kill_all()
                if codes != [0, 0]:
                    print("FAIL: %s: exits %s\n%s" % (where, codes,
                                                      "\n".join(p.text()[-1500:] for p in ranks)))
                    return 1
                if "2 ranks (c10d gloo)" not in ranks[0].text():
                    print("FAIL: %s: rank 0 did not train with 2 ranks:\n%s"
                          % (where, ranks[0].text()[-1500:]))
                    return 1
                with open(os.path.join(out, "result.json")) as f:
                    results[where] = json.load(f)["parameters_sha256"]
        if results["two_nodes"] != results["one_node"]:
            print("FAIL: parameters differ between two nodes and one: %s" % results)
            return 1
        print("OK: two ranks on two nodes trained bit for bit as on one (%s)"
              % results["two_nodes"][:16])
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(64)
    sys.exit(main(sys.argv[1]))
