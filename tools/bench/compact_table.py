#!/usr/bin/env python3
"""Summarises tools/bench/compact.sh: OUT/table.md, OUT/compact.json and
OUT/prune_curves.png (pruning: perplexity / accuracy against sparsity).

    tools/bench/compact_table.py OUT_DIR
"""
import glob
import json
import os
import sys


def load(pattern):
    out = {}
    for path in sorted(glob.glob(pattern)):
        out[os.path.basename(os.path.dirname(path))] = json.load(open(path))
    return out


def main(out):
    quant = load(os.path.join(out, "quantize", "*", "quantize.json"))
    prune = load(os.path.join(out, "prune", "*", "prune.json"))
    slices = load(os.path.join(out, "slice", "*", "slice.json"))
    recover = load(os.path.join(out, "recover", "*", "eval.json"))
    gguf = {os.path.basename(p): os.path.getsize(p)
            for p in sorted(glob.glob(os.path.join(out, "gguf", "*.gguf")))}
    lines = ["## Quantization", "",
             "| model | scheme | bytes | metric before | metric after | change | "
             "inference/s before | after | fallback tensors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, q in quant.items():
        before, after = q["rows"][0], q["rows"][-1]
        metric = "perplexity" if "perplexity" in before else "test accuracy"
        b, a = before[metric], after[metric]
        change = (f"{100 * (a - b) / b:+.2f} %" if metric == "perplexity"
                  else f"{100 * (a - b):+.2f} points")
        lines.append(
            f"| {name.split('-')[0]} | {q['scheme']} | {before['bytes']:,} → {after['bytes']:,} "
            f"({before['bytes'] / after['bytes']:.2f}×) | {b:.4f} | {a:.4f} | {change} | "
            f"{before['per_second']:,.0f} | {after['per_second']:,.0f} | {q['fallback_tensors']} |")
    lines += ["", "## GGUF files", "", "| file | bytes |", "|---|---|"]
    lines += [f"| {n} | {s:,} |" for n, s in gguf.items()]
    lines += ["", "## Pruning", "",
              "| model | method | kind | amount | parameters (nonzero) | metric | inference/s |",
              "|---|---|---|---|---|---|---|"]
    curves = {}
    for name, p in sorted(prune.items()):
        model = name.split("-")[0]
        before, after = p["rows"][0], p["rows"][-1]
        metric = "perplexity" if "perplexity" in after else "test accuracy"
        if not p["structured"]:
            kind, amount = "unstructured", p["sparsity"]
        elif p.get("heads_fraction", 0) > 0:
            kind, amount = "heads", p["heads_fraction"]
        else:
            kind = "channels" if model == "cnn" else "neurons"
            amount = p["fraction"]
        lines.append(f"| {model} | {p['method']} | {kind} | {amount} | "
                     f"{before['parameters']:,} → {after['parameters']:,} "
                     f"({after.get('nonzero', after['parameters']):,}) | "
                     f"{before[metric]:.4f} → {after[metric]:.4f} | "
                     f"{before['per_second']:,.0f} → {after['per_second']:,.0f} |")
        key = (model, metric, p["method"], kind)
        curves.setdefault(key, [(0.0, before[metric])]).append((amount, after[metric]))
    lines += ["", "## SliceGPT", "",
              "| fraction | width | parameters | bytes | perplexity | tokens/s | signal energy kept (min) |",
              "|---|---|---|---|---|---|---|"]
    for name, sl in sorted(slices.items(), key=lambda kv: kv[1]["fraction"]):
        before, after = sl["rows"][0], sl["rows"][-1]
        lines.append(f"| {sl['fraction']} | {sl['width']} | {before['parameters']:,} → "
                     f"{after['parameters']:,} | {before['bytes']:,} → {after['bytes']:,} | "
                     f"{before['perplexity']:.3f} → {after['perplexity']:.3f} | "
                     f"{before['per_second']:,.0f} → {after['per_second']:,.0f} | "
                     f"{min(sl['kept_energy']):.3f} |")
    if recover:
        lines += ["", "## Recovery distillation", "",
                  "| model | parameters | metric | before recovery | after recovery |",
                  "|---|---|---|---|---|"]

        def source(name):  # the compacted model's row before recovery
            if name.endswith("dense-control"):  # the uncompacted model: any report's first row
                want = "cnn" if name.startswith("cnn") else "lm"
                for key, p in list(slices.items()) + list(prune.items()):
                    if key.split("-")[0] == want:
                        return p["rows"][0]
                return {}
            if name.startswith("slice-"):
                return slices.get(name[len("slice-"):], {}).get("rows", [{}])[-1]
            return prune.get(name, {}).get("rows", [{}])[-1]
        order = sorted(recover, key=lambda n: (n.startswith("cnn"), not n.endswith("control"), n))
        for name in order:
            row, r = source(name), recover[name]
            metric = "perplexity" if "perplexity" in r else "test accuracy"
            after = r["perplexity"] if metric == "perplexity" else r["accuracy"]
            lines.append(f"| {name} | {row.get('parameters', 0):,} | {metric} | "
                         f"{row.get(metric, float('nan')):.4f} | {after:.4f} |")
    open(os.path.join(out, "table.md"), "w").write("\n".join(lines) + "\n")
    json.dump({"quantize": quant, "prune": prune, "slice": slices, "recover": recover,
               "gguf_bytes": gguf},
              open(os.path.join(out, "compact.json"), "w"), indent=1)
    print("\n".join(lines))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (apt-get install python3-matplotlib): no plot", file=sys.stderr)
        return
    models = sorted({k[0] for k in curves})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2))
    if len(models) == 1:
        axes = [axes]
    for ax, model in zip(axes, models):
        for (m, metric, method, kind), points in sorted(curves.items()):
            if m != model:
                continue
            points.sort()
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o",
                    linestyle={"unstructured": "-", "heads": ":"}.get(kind, "--"),
                    label=f"{kind}, {method}")
            ax.set_ylabel(metric)
        ax.set_xlabel("share of weights zeroed (unstructured) / of units removed "
                      "(neurons, heads, channels)")
        ax.set_title({"lm": "Llama student d128 L2 (KJV validation)",
                      "mlp": "MLP 784-128-10 (Fashion-MNIST test)",
                      "cnn": "CNN 32-64-128 (Fashion-MNIST test)"}.get(model, model))
        if model == "lm":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "prune_curves.png"), dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench_out/compact")
