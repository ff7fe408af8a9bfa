#!/usr/bin/env bash
# The distillation-robustness table of docs/results.md: independently trained
# teachers x student seeds, every student against scratch at equal steps.
#
#   tools/bench/lm_robustness.sh [OUT_ROOT]     (default: bench_out/lm_robust)
#
# For each of TEACHER_SEEDS (default "1 2"), OUT_ROOT/t<seed> is a full
# tools/bench/lm_distill.sh sweep with that teacher seed (scratch, live
# top-64 + tail and dense students at SEEDS) followed by tools/bench/lm_cache.sh
# (a top-32 and a sampled cache dumped from that teacher, a student from
# each at SEEDS), and, unless ABLATE_CLIP=0, live top-64 students without
# gradient clipping (--clip_grad_norm=0, the defaults before the one-engine
# change). TEACHER_STEPS and STEPS default to the README's 600 and
# 250. Then tools/bench/lm_robustness.py writes OUT_ROOT/robustness.json
# and OUT_ROOT/robustness.md. Finished runs are skipped, so an interrupted
# sweep continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${1:-bench_out/lm_robust}
export TEACHER_STEPS=${TEACHER_STEPS:-600} STEPS=${STEPS:-250} SEEDS=${SEEDS:-"1 2"}
TEACHER_SEEDS=${TEACHER_SEEDS:-"1 2"}
for ts in $TEACHER_SEEDS; do
  out=$ROOT/t$ts
  mkdir -p "$out"
  dense=""
  for s in $SEEDS; do dense="$dense dense:0:0.5:$s"; done
  echo "[lm_robustness] teacher seed $ts -> $out" >&2
  TEACHER_SEED=$ts EXTRA="$dense" tools/bench/lm_distill.sh "$out"
  tools/bench/lm_cache.sh "$out"
  if [ "${ABLATE_CLIP:-1}" = 1 ]; then
    # The ablation: live top-64 without gradient clipping (the defaults
    # before the one-engine change), to see whether clipping is the fix.
    (
      OUT=$out
      source tools/bench/lm_common.sh
      for seed in $SEEDS; do
        run "top64_noclip_s$seed" --model="$STUDENT_MODEL" --steps="$STEPS" --lr=3e-3 \
          --seed="$seed" --eval_every=50 --eval_sequences=96 --teacher="$out/runs/teacher/model" \
          --temperature=1 --alpha=0.5 --divergence=fkl --top_k=64 --clip_grad_norm=0
      done
    )
  fi
done
/usr/bin/python3 tools/bench/lm_robustness.py "$ROOT"
