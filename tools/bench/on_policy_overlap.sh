#!/usr/bin/env bash
# The speed-up of generating the next on-policy rollout while the current
# step trains (--max_staleness=1) over generating it first (0), side by side
# in one run on this machine, alternating the two settings ROUNDS times.
# Runs on the arithmetic task of on_policy_arith.sh (its teacher and scratch
# student must exist: run that first), continuing the seed-1 scratch student
# fully on-policy (lambda = 1, generalised JSD) for STEPS steps.
#
#   tools/bench/on_policy_overlap.sh [ARITH_OUT] [OUT]
#     (defaults retort_work/on_policy_arith, retort_work/on_policy_overlap)
#
# Writes OUT/runs.jsonl (one object a run: staleness, BLAS threads, seconds,
# tokens/s, the generation and scoring seconds on the training thread) and
# OUT/summary.md. Nothing else should run meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARITH=${1:-retort_work/on_policy_arith}
OUT=${2:-retort_work/on_policy_overlap}
RETORT=${RETORT:-build/retort}
STEPS=${STEPS:-300}
ROUNDS=${ROUNDS:-3}
BLAS=${BLAS:-"1 2"}
mkdir -p "$OUT"
: >"$OUT/runs.jsonl"
for f in "$ARITH/runs/teacher/model/config.json" "$ARITH/runs/scratch_s1/model/config.json"; do
  [ -f "$f" ] || { echo "missing $f: run tools/bench/on_policy_arith.sh first" >&2; exit 1; }
done

for round in $(seq "$ROUNDS"); do
  for blas in $BLAS; do
    for staleness in 0 1; do
      dir=$OUT/run_b${blas}_s${staleness}
      "$RETORT" lm train --init_from="$ARITH/runs/scratch_s1/model" --data="$ARITH/corpus" \
        --teacher="$ARITH/runs/teacher/model" --prompts="$ARITH/task/prompts_train.jsonl" \
        --steps="$STEPS" --lr=1e-3 --seq_len=64 --batch_size=32 --rollout_tokens=5 \
        --on_policy_fraction=1 --on_policy_loss=jsd --on_policy_candidates=8 --top_k=16 \
        --max_staleness="$staleness" --threads=1 --blas_threads="$blas" --log_every_steps=0 \
        --eval_sequences=16 --overwrite --out_dir="$dir" >/dev/null 2>"$dir.log"
      /usr/bin/python3 - "$dir" "$round" "$blas" "$staleness" >>"$OUT/runs.jsonl" <<'PY'
import json, sys
d, rnd, blas, staleness = sys.argv[1:]
r = json.load(open(d + "/result.json"))
timing = {}
for line in open(d + "/metrics.jsonl"):
    m = json.loads(line)
    timing = m.get("validation", {}).get("on_policy", timing)
print(json.dumps({"round": int(rnd), "blas_threads": int(blas), "max_staleness": int(staleness),
                  "train_seconds": r["train_seconds"], "tokens_per_second": r["tokens_per_second"],
                  "rollout_seconds": timing.get("rollout_seconds"),
                  "scoring_seconds": timing.get("scoring_seconds")}))
PY
      tail -1 "$OUT/runs.jsonl" >&2
    done
  done
done

/usr/bin/python3 - "$OUT" <<'PY'
import json, sys, statistics
out = sys.argv[1]
runs = [json.loads(l) for l in open(out + "/runs.jsonl")]
lines = ["| BLAS threads | staleness 0 s (median) | staleness 1 s (median) | speed-up | "
         "generation share at 0 | generation share at 1 |", "|---|---|---|---|---|---|"]
summary = {}
for blas in sorted({r["blas_threads"] for r in runs}):
    med = {}
    share = {}
    for s in (0, 1):
        rs = [r for r in runs if r["blas_threads"] == blas and r["max_staleness"] == s]
        med[s] = statistics.median(r["train_seconds"] for r in rs)
        share[s] = statistics.median(r["rollout_seconds"] / r["train_seconds"] for r in rs)
    summary[blas] = {"seconds": med, "speedup": med[0] / med[1], "generation_share": share}
    lines.append(f"| {blas} | {med[0]:.2f} | {med[1]:.2f} | {med[0] / med[1]:.2f}x | "
                 f"{share[0]:.0%} | {share[1]:.0%} |")
open(out + "/summary.md", "w").write("\n".join(lines) + "\n")
json.dump(summary, open(out + "/summary.json", "w"), indent=2)
print("\n".join(lines))
PY
