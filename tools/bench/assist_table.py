#!/usr/bin/python3
"""Summarises tools/bench/assist.sh: OUT/table.md and OUT/assist.json.

  assist_table.py OUT_DIR

One row per run (Fashion-MNIST: validation and test accuracy; language
model: validation perplexity, top-1, agreement with the teacher), then the
mean and the spread (max - min) over seeds of each method.
"""
import json
import os
import re
import statistics
import sys


def load(out):
    runs = []
    for line in open(os.path.join(out, "results.jsonl")):
        if line.strip():
            runs.append(json.loads(line))
    return runs


def method(name):
    return re.sub(r"_s\d+$", "", name)


def main(out):
    runs = load(out)
    lines = []
    summary = {"runs": runs, "methods": {}}
    for kind, metric, label in (("fm", "test_acc", "test accuracy"),
                                ("lm", "perplexity", "validation perplexity")):
        rows = [r for r in runs if r["kind"] == kind]
        if not rows:
            continue
        if kind == "fm":
            lines += ["### Fashion-MNIST (student mlp 784-128-10)", "",
                      "| run | val acc | test acc | student train s | assistant train s |",
                      "|---|---|---|---|---|"]
            for r in rows:
                lines.append("| %s | %.4f | %.4f | %.0f | %s |" % (
                    r["name"], r["val_acc"], r["test_acc"], r["train_seconds"],
                    "%.0f" % r["assistant_train_seconds"] if "assistant_train_seconds" in r else "—"))
        else:
            lines += ["### Language model (student llama d128 L2 tied)", "",
                      "| run | validation perplexity | top-1 | agreement | tokens/s | assistant train s |",
                      "|---|---|---|---|---|---|"]
            for r in rows:
                lines.append("| %s | %.3f | %.4f | %.4f | %.0f | %s |" % (
                    r["name"], r["perplexity"], r["top1"], r["teacher_agreement"],
                    r["tokens_per_second"],
                    "%.0f" % r["assistant_train_seconds"] if "assistant_train_seconds" in r else "—"))
        lines += ["", "| method | seeds | mean %s | spread |" % label, "|---|---|---|---|"]
        groups = {}
        for r in rows:
            groups.setdefault(method(r["name"]), []).append(r[metric])
        for m, values in groups.items():
            mean = statistics.mean(values)
            spread = max(values) - min(values)
            summary["methods"][m] = {"seeds": len(values), "mean_" + metric: mean,
                                     "spread": spread, "values": values}
            fmt = "%.4f" if kind == "fm" else "%.3f"
            lines.append(("| %s | %d | " + fmt + " | " + fmt + " |") % (m, len(values), mean, spread))
        lines.append("")
    open(os.path.join(out, "table.md"), "w").write("\n".join(lines) + "\n")
    json.dump(summary, open(os.path.join(out, "assist.json"), "w"), indent=2)
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench_out/assist")
