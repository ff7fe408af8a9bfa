#!/usr/bin/env bash
# The language-model rows of loop_compare.sh (retort against the PyTorch
# loop, each at its default thread setting), alternated ROUNDS times in one
# run so that a busy moment on a shared machine hits both frameworks alike;
# medians in OUT/summary.md. Needs loop_compare.sh's OUT (corpus and the
# d256 L4 teacher).
#
#   tools/bench/lm_loop_rounds.sh [LOOP_COMPARE_OUT] [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
LC=${1:-retort_work/loop_compare}
OUT=${2:-retort_work/lm_loop_rounds}
RETORT=${RETORT:-build/retort}
ROUNDS=${ROUNDS:-3}
PY=/usr/bin/python3
mkdir -p "$OUT"
: >"$OUT/runs.jsonl"
LM=(--data="$LC/corpus" --seq_len=128 --batch_size=16 --steps=60 --log_every_steps=0 --overwrite
  --model=d=128,layers=2,heads=4,ffn=344,tied --threads=1 --out_dir="$OUT/r")
rate() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens_per_second'])" "$1"; }
last() { $PY -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['tokens_per_second'])"; }
record() { echo "{\"round\": $1, \"workload\": \"$2\", \"framework\": \"$3\", \"rate\": $4}" | tee -a "$OUT/runs.jsonl" >&2; }
for round in $(seq "$ROUNDS"); do
  "$RETORT" lm train "${LM[@]}" >/dev/null 2>&1
  record "$round" lm-labels retort "$(rate "$OUT/r/result.json")"
  record "$round" lm-labels pytorch "$($PY tools/bench/pytorch_loop.py --mode=lm --batch_size=16 \
    --seq_len=128 --steps=60 --threads=1 | last)"
  "$RETORT" lm train "${LM[@]}" --teacher="$LC/lm_teacher/model" --top_k=64 >/dev/null 2>&1
  record "$round" lm-distill retort "$(rate "$OUT/r/result.json")"
  record "$round" lm-distill pytorch "$($PY tools/bench/pytorch_loop.py --mode=lm --batch_size=16 \
    --seq_len=128 --steps=30 --teacher_model=d=256,layers=4,heads=8,ffn=688 --top_k=64 \
    --threads=1 | last)"
done
$PY - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(out + "/runs.jsonl")]
lines = ["| workload | retort (median, each) | PyTorch loop (median, each) | ratio of medians |", "|---|---|---|---|"]
summary = {}
for w in ("lm-labels", "lm-distill"):
    r = [x["rate"] for x in runs if x["workload"] == w and x["framework"] == "retort"]
    p = [x["rate"] for x in runs if x["workload"] == w and x["framework"] == "pytorch"]
    summary[w] = {"retort": r, "pytorch": p, "ratio": statistics.median(r) / statistics.median(p)}
    lines.append(f"| {w} | {statistics.median(r):,.0f} ({', '.join(f'{x:,.0f}' for x in r)}) | "
                 f"{statistics.median(p):,.0f} ({', '.join(f'{x:,.0f}' for x in p)}) | "
                 f"{summary[w]['ratio']:.2f}x |")
open(out + "/summary.md", "w").write("\n".join(lines) + "\n")
json.dump(summary, open(out + "/summary.json", "w"), indent=2)
print("\n".join(lines))
PY
