#!/usr/bin/env bash
# Reproduces the language-model distillation figures of docs/results.md.
#
#   tools/bench/lm_distill.sh [OUT_DIR]     (default: bench_out/lm)
#
# 1. `retort data prepare`: the King James Bible, a 4096-piece SentencePiece
#    tokenizer, train/validation shards;
# 2. the teacher (TEACHER_MODEL, seed TEACHER_SEED) trained on next-token
#    cross-entropy;
# 3. the student (STUDENT_MODEL, 4-8x fewer parameters) on the same tokens
#    and steps: from scratch, and distilled (forward KL at T=1, alpha=0.5)
#    with top-k 64 targets plus the tail mass, over SEEDS; then the EXTRA
#    runs (default: dense targets, top-16 and top-8 at seed 1; each
#    NAME:K[:ALPHA[:SEED]], a later --alpha overriding the 0.5 of TEACHER);
# 4. `retort eval` of every model on the whole validation split (perplexity,
#    top-1, agreement with the teacher).
# Every run's summary is a line of OUT_DIR/results.jsonl; tools/bench/lm_table.py
# writes OUT_DIR/table.md and the loss-curve plot. Runs already in
# results.jsonl are skipped, so an interrupted sweep continues.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench_out/lm}
source tools/bench/lm_common.sh
EXTRA=${EXTRA:-"dense:0 top16:16 top8:8"}

$RETORT data prepare --out_dir="$DATA" --vocab_size=4096 >"$OUT/corpus.log" 2>&1 || {
  cat "$OUT/corpus.log" >&2; exit 1; }

run teacher --model="$TEACHER_MODEL" --steps="$TEACHER_STEPS" --lr=2e-3 --seed="${TEACHER_SEED:-1}" \
  --eval_every=200 --eval_sequences=96
TEACHER="--teacher=$OUT/runs/teacher/model --temperature=1 --alpha=0.5 --divergence=fkl"
for seed in $SEEDS; do
  run "scratch_s$seed" --model="$STUDENT_MODEL" --steps="$STEPS" --lr=3e-3 --seed="$seed" \
    --eval_every=50 --eval_sequences=96
  run "top64_s$seed" --model="$STUDENT_MODEL" --steps="$STEPS" --lr=3e-3 --seed="$seed" \
    --eval_every=50 --eval_sequences=96 $TEACHER --top_k=64
done
# EXTRA: NAME:K[:ALPHA[:SEED]] runs, e.g. "dense:0 top16:16 top64_a08:64:0.8:2".
for spec in $EXTRA; do
  IFS=: read -r name k alpha seed <<<"$spec"
  run "${name}_s${seed:-1}" --model="$STUDENT_MODEL" --steps="$STEPS" --lr=3e-3 \
    --seed="${seed:-1}" --eval_every=50 --eval_sequences=96 $TEACHER --top_k="$k" \
    ${alpha:+--alpha=$alpha}
done
/usr/bin/python3 tools/bench/lm_table.py "$OUT"
