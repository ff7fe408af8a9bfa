#!/usr/bin/python3
"""Summarises tools/bench/lm_robustness.sh: OUT_ROOT/robustness.json and .md.

  lm_robustness.py OUT_ROOT

OUT_ROOT/t<teacher seed>/results.jsonl (one per teacher) hold the runs. For
every teacher and student seed, each distilled student's validation
perplexity is set against scratch of the same seed; the summary says which
configurations beat scratch for every teacher and seed.
"""
import json
import os
import re
import statistics
import sys

# Run name prefix -> what the table calls it, in table order.
KINDS = [
    ("scratch", "scratch (labels only)", "-"),
    ("top64", "live top-64 + tail (in process)", "260 on the wire (bf16)"),
    ("dense", "live dense (in process)", "8,192 on the wire (bf16)"),
    ("top64_noclip", "live top-64 + tail, no gradient clipping (the old default)",
     "260 on the wire (bf16)"),
    ("cache_top32", "cache: top-32, 4 exact + 8-bit codes", None),
    ("cache_sampled32", "cache: 32 samples (ids + counts)", None),
]


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


def main(root):
    teachers = sorted(d for d in os.listdir(root) if re.fullmatch(r"t\d+", d))
    report = {"teachers": [], "configurations": {}}
    for t in teachers:
        runs = {r["name"]: r for r in load_jsonl(os.path.join(root, t, "results.jsonl"))}
        dumps = {d["name"]: d for d in load_jsonl(os.path.join(root, t, "caches.jsonl"))}
        entry = {"teacher": t, "teacher_perplexity": runs.get("teacher", {}).get("perplexity"),
                 "bytes_per_token": {k: d["bytes_per_token"] for k, d in dumps.items()},
                 "students": []}
        for name, r in sorted(runs.items()):
            m = re.fullmatch(r"(.+)_s(\d+)", name)
            if not m:
                continue
            kind, seed = m.group(1), int(m.group(2))
            scratch = runs.get("scratch_s%d" % seed)
            row = {"kind": kind, "seed": seed, "perplexity": r["perplexity"],
                   "teacher_agreement": r["teacher_agreement"]}
            if scratch and kind != "scratch":
                row["vs_scratch"] = r["perplexity"] / scratch["perplexity"] - 1
            entry["students"].append(row)
            c = report["configurations"].setdefault(kind, {"runs": 0, "beat_scratch": 0,
                                                           "perplexities": []})
            c["runs"] += 1
            c["perplexities"].append(r["perplexity"])
            if row.get("vs_scratch", 0) < 0:
                c["beat_scratch"] += 1
        report["teachers"].append(entry)
    for kind, c in report["configurations"].items():
        c["mean_perplexity"] = statistics.mean(c["perplexities"])
        c["beats_scratch_everywhere"] = kind != "scratch" and c["beat_scratch"] == c["runs"]
    with open(os.path.join(root, "robustness.json"), "w") as f:
        json.dump(report, f, indent=2)

    seeds = sorted({s["seed"] for t in report["teachers"] for s in t["students"]})
    lines = ["| teacher | val. ppl | student | " +
             " | ".join("seed %d" % s for s in seeds) + " | vs scratch | bytes/token |",
             "|---|---|---|" + "---|" * len(seeds) + "---|---|"]
    for t in report["teachers"]:
        by = {(s["kind"], s["seed"]): s for s in t["students"]}
        for kind, label, wire in KINDS:
            cells = [by.get((kind, s)) for s in seeds]
            if not any(cells):
                continue
            ppl = ["%.2f" % c["perplexity"] if c else "" for c in cells]
            rel = [c.get("vs_scratch") for c in cells if c and "vs_scratch" in c]
            rel_s = ", ".join("%+.1f %%" % (100 * v) for v in rel) if rel else ""
            bpt = wire or ("%.1f on disk" % t["bytes_per_token"][kind]
                           if kind in t["bytes_per_token"] else "")
            tp = t["teacher_perplexity"]
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                t["teacher"], "%.2f" % tp if tp else "", label, " | ".join(ppl), rel_s, bpt))
    lines.append("")
    for kind, label, _ in KINDS:
        c = report["configurations"].get(kind)
        if c and kind != "scratch":
            lines.append("- %s: beat scratch in %d of %d (teacher, seed) pairs; mean %.2f" % (
                label, c["beat_scratch"], c["runs"], c["mean_perplexity"]))
    with open(os.path.join(root, "robustness.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
