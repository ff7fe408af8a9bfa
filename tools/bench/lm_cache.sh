#!/usr/bin/env bash
# The teacher-logit cache figures of docs/results.md, after
# tools/bench/lm_distill.sh has trained OUT_DIR's teacher (same environment
# variables):
#
#   tools/bench/lm_cache.sh [OUT_DIR]     (default: bench_out/lm)
#
# For each CACHES entry NAME:FLAG,FLAG... (default: top-32 at 8 bits, and 32
# samples), `retort teacher dump` writes the teacher's targets over the
# corpus to OUT_DIR/caches/NAME (its dump_result.json, with bytes/token and
# tokens/s, becomes a line of OUT_DIR/caches.jsonl), then the student trains
# from the cache at each of SEEDS with the settings of lm_distill.sh's top64
# runs (forward KL, T=1, alpha=0.5): runs NAME_s<seed> in results.jsonl.
# Runs and dumps already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench_out/lm}
source tools/bench/lm_common.sh
CACHES=${CACHES:-"cache_top32:--cache_encoding=topk,--cache_top_k=32 cache_sampled32:--cache_encoding=sampled,--cache_samples=32"}
[ -d "$OUT/runs/teacher/model" ] || { echo "no teacher in $OUT; run tools/bench/lm_distill.sh first" >&2; exit 1; }

for spec in $CACHES; do
  name=${spec%%:*}
  flags=${spec#*:}
  dir=$OUT/caches/$name
  if ! grep -q "\"name\":\"$name\"" "$OUT/caches.jsonl" 2>/dev/null; then
    echo "[lm_cache] dump $name" >&2
    mkdir -p "$OUT/caches"
    # shellcheck disable=SC2086
    $RETORT teacher dump --data="$DATA" --seq_len=128 --temperature=1 --threads="${THREADS:-2}" \
      --teacher="$OUT/runs/teacher/model" --out_dir="$dir" ${flags//,/ } 2>"$dir.log" || {
      echo "dump $name failed; see $dir.log" >&2; exit 1; }
    /usr/bin/python3 - "$name" "$dir" "$flags" >>"$OUT/caches.jsonl" <<'PY'
import json, sys
name, d, flags = sys.argv[1:]
r = json.load(open(d + "/dump_result.json"))
print(json.dumps(dict(name=name, flags=flags, **r), separators=(",", ":")))
PY
  fi
  for seed in $SEEDS; do
    run "${name}_s$seed" --model="$STUDENT_MODEL" --steps="$STEPS" --lr=3e-3 --seed="$seed" \
      --eval_every=50 --eval_sequences=96 --teacher_cache="$dir" --temperature=1 --alpha=0.5 \
      --divergence=fkl
  done
done
/usr/bin/python3 tools/bench/lm_table.py "$OUT"
