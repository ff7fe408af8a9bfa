#!/usr/bin/python3
"""Summarises tools/bench/lm_distill.sh: OUT/table.md and OUT/lm_curves.png.

  lm_table.py OUT_DIR

The table has one row per run (validation perplexity on every validation
token, top-1, teacher agreement, tokens/s) and the mean over seeds of the
scratch, top-64 and dense students; the plot shows the validation loss during
training (from each run's metrics.jsonl) and the training cross-entropy.
"""
import json
import os
import statistics
import sys


def load(out):
    runs = {}
    for line in open(os.path.join(out, "results.jsonl")):
        r = json.loads(line)
        runs[r["name"]] = r
    return runs


def curves(out, name):
    val, train = [], []
    path = os.path.join(out, "runs", name, "metrics.jsonl")
    if not os.path.exists(path):  # a run recorded in results.jsonl whose directory is gone
        return val, train
    for line in open(path):
        j = json.loads(line)
        if j.get("split") == "validation":
            val.append((j["step"], j["validation"]["loss"] if "validation" in j else j["loss"]))
        elif "hard" in j:
            train.append((j["step"], j["hard"]))
    return val, train


def main(out):
    runs = load(out)
    lines = ["| run | params | validation perplexity | top-1 | agreement with teacher | tokens/s |",
             "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | | {r['perplexity']:.2f} | {r['top1']:.4f} | "
                     f"{r['teacher_agreement']:.4f} | {r['tokens_per_second']:.0f} |")
    summary = {}
    for group in ("scratch", "top64", "dense"):
        ppl = [r["perplexity"] for n, r in runs.items() if n.startswith(group + "_s")]
        if ppl:
            summary[group] = {"mean": statistics.mean(ppl), "values": ppl}
            lines.append(f"| **{group} mean over {len(ppl)} seeds** | | **{statistics.mean(ppl):.2f}** "
                         f"({', '.join(f'{p:.2f}' for p in ppl)}) | | | |")
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"runs": runs, "means": summary}, f, indent=2)
    print("\n".join(lines))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (apt-get install python3-matplotlib): no plot", file=sys.stderr)
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"scratch": ("tab:gray", "-"), "top64": ("tab:blue", "-"), "dense": ("tab:green", "--"),
              "top16": ("tab:orange", "--"), "top8": ("tab:red", ":"), "teacher": ("black", "-")}
    for name in runs:
        if name == "teacher":
            continue
        color, ls = styles.get(name.split("_")[0], ("tab:purple", "-"))
        val, train = curves(out, name)
        if val:
            ax1.plot([s for s, _ in val], [l for _, l in val], color=color, ls=ls, marker=".", label=name)
        if train:
            ax2.plot([s for s, _ in train], [l for _, l in train], color=color, ls=ls, lw=0.8, label=name)
    t = runs.get("teacher")
    if t:
        ax1.axhline(t["loss"], color="black", lw=0.8, ls="-.", label=f"teacher ({t['perplexity']:.1f} ppl)")
    ax1.set(xlabel="step", ylabel="validation cross-entropy (nats/token)",
            title="Student validation loss (96 sequences per point)")
    ax2.set(xlabel="step", ylabel="training next-token cross-entropy",
            title="Student training cross-entropy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "lm_curves.png"), dpi=110)
    print("plot:", os.path.join(out, "lm_curves.png"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench_out/lm")
