#!/usr/bin/env python3
"""Summarises tools/bench/kd_sweep.sh output as the markdown of docs/results.md.

  python3 tools/bench/kd_table.py OUT_DIR > OUT_DIR/table.md
"""
import json
import statistics
import sys


def main():
    out = sys.argv[1]
    runs = {}
    for line in open(f"{out}/results.jsonl"):
        r = json.loads(line)
        runs[r["name"]] = r
    chosen = json.load(open(f"{out}/chosen.json"))

    def acc(name, split="test"):
        return runs[name][split]["accuracy"]

    print("### Learning-rate search (seed 1, selected on validation)\n")
    print("| run | lr | val acc | test acc |")
    print("|---|---|---|---|")
    for name, r in runs.items():
        if "_lr" in name:
            lr = name.split("_lr")[1]
            print(f"| {name.split('_lr')[0]} | {lr} | {acc(name, 'val'):.4f} | {acc(name):.4f} |")

    print("\n### Temperature and alpha (seed 1, distilled lr "
          f"{chosen['distill_lr']}, selected on validation)\n")
    print("| T | alpha | val acc | test acc |")
    print("|---|---|---|---|")
    grid = []
    for name in runs:
        if name.startswith("distill_T"):
            t, a = name[len("distill_T"):].split("_a")
            grid.append((float(t), float(a), name))
    grid.append((2.0, 0.5, f"distill_lr{chosen['distill_lr']}"))  # the lr search's setting
    for t, a, name in sorted(grid):
        print(f"| {t:g} | {a:g} | {acc(name, 'val'):.4f} | {acc(name):.4f} |")

    print("\n### Final: 3 seeds, test set\n")
    seeds = sorted({n.rsplit("_s", 1)[1] for n in runs if n.startswith("final_")})
    print("| seed | scratch acc (errors) | distilled acc (errors) | gain (points) |")
    print("|---|---|---|---|")
    sc, di = [], []
    for s in seeds:
        a, b = runs[f"final_scratch_s{s}"]["test"], runs[f"final_distill_s{s}"]["test"]
        sc.append(a["accuracy"])
        di.append(b["accuracy"])
        print(f"| {s} | {a['accuracy']:.4f} ({a['errors']}) | {b['accuracy']:.4f} ({b['errors']}) "
              f"| {100 * (b['accuracy'] - a['accuracy']):+.2f} |")

    def ms(v):
        return f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0:.4f}"

    gain = [100 * (b - a) for a, b in zip(sc, di)]
    print(f"| mean ± std | {ms(sc)} | {ms(di)} | {statistics.mean(gain):+.2f} ± "
          f"{statistics.stdev(gain) if len(gain) > 1 else 0:.2f} |")
    t = runs["teacher"]["test"]
    print(f"\nTeacher ({t['architecture']}): test accuracy {t['accuracy']:.4f} "
          f"({t['errors']} errors). Chosen: scratch lr {chosen['scratch_lr']}, distilled lr "
          f"{chosen['distill_lr']}, T={chosen['temperature']}, alpha={chosen['alpha']}.")


if __name__ == "__main__":
    main()
