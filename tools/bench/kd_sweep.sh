#!/usr/bin/env bash
# Reproduces the distillation table of docs/results.md.
#
#   tools/bench/kd_sweep.sh [OUT_DIR]     (default: bench_out/kd_sweep)
#
# 1. trains the teacher once (TEACHER_FLAGS);
# 2. searches the learning rate for the scratch student and for the distilled
#    student (same grid, seed 1, selected on validation accuracy);
# 3. sweeps T and alpha for the distilled student at its best learning rate;
# 4. trains scratch and distilled students with the chosen settings over 3
#    seeds and evaluates every best checkpoint on the test set.
# Every run's result is a line of OUT_DIR/results.jsonl; OUT_DIR/table.md is
# the summary. Environment: TEACHER_FLAGS (default: the demo's teacher),
# TEACHER_EPOCHS (10), STUDENT_HIDDEN (default 16), EPOCHS (10),
# LRS ("1e-3 3e-3 1e-2"), TS ("1 2 4 8"), ALPHAS ("0.5 0.9"), SEEDS ("1 2 3").
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench_out/kd_sweep}
RETORT=${RETORT:-./build/retort}
HIDDEN=${STUDENT_HIDDEN:-16}
TEACHER_FLAGS=${TEACHER_FLAGS:-"--arch=cnn --hidden=32,64,128 --dropout=0.5 --lr=1e-3"}
EPOCHS=${EPOCHS:-10}
LRS=${LRS:-"1e-3 3e-3 1e-2"}
TS=${TS:-"1 2 4 8"}
ALPHAS=${ALPHAS:-"0.5 0.9"}
SEEDS=${SEEDS:-"1 2 3"}
COMMON="--threads=${THREADS:-1} --log_every_steps=0"
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl

# run NAME KIND FLAGS...: trains (KIND=train|distill) unless done, evaluates
# best.pt on validation and test, appends one JSON line.
run() {
  local name=$1 kind=$2; shift 2
  local dir=$OUT/runs/$name
  if ! grep -q "\"name\":\"$name\"" "$RESULTS" 2>/dev/null; then
    $RETORT "$kind" $COMMON --overwrite --out_dir="$dir" "$@" 2>"$dir.log" || {
      echo "run $name failed; see $dir.log" >&2; exit 1; }
    $RETORT eval $COMMON --checkpoint="$dir/best.pt" --split=validation --json_out="$dir/val.json" >/dev/null
    $RETORT eval $COMMON --checkpoint="$dir/best.pt" --split=test --json_out="$dir/test.json" >/dev/null
    local sps
    sps=$(grep '"event":"epoch"' "$dir/metrics.jsonl" | tail -1 | sed 's/.*"samples_per_second":\([0-9.e+-]*\).*/\1/')
    printf '{"name":"%s","kind":"%s","flags":"%s","val":%s,"test":%s,"last_epoch_samples_per_s":%s}\n' \
      "$name" "$kind" "$*" "$(tr -d '\n' <"$dir/val.json")" "$(tr -d '\n' <"$dir/test.json")" "$sps" >>"$RESULTS"
  fi
  echo "$name" >&2
}

val_of() {
  python3 -c 'import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["name"] == sys.argv[2]: print(r["val"]["accuracy"])' "$RESULTS" "$1"
}

# 1. Teacher.
TEACHER=$OUT/runs/teacher/best.pt
run teacher train $TEACHER_FLAGS --epochs=${TEACHER_EPOCHS:-10} --seed=1

# 2. Learning-rate search, the same grid for both.
best_lr() {  # best_lr PREFIX
  local best="" bestv=0
  for lr in $LRS; do
    v=$(val_of "$1_lr$lr")
    if awk "BEGIN{exit !($v > $bestv)}"; then best=$lr; bestv=$v; fi
  done
  echo "$best"
}
for lr in $LRS; do
  run "scratch_lr$lr" train --hidden=$HIDDEN --lr=$lr --epochs=$EPOCHS --seed=1
  run "distill_lr$lr" distill --teacher=$TEACHER --hidden=$HIDDEN --lr=$lr --epochs=$EPOCHS \
    --seed=1 --temperature=2 --alpha=0.5
done
SCRATCH_LR=$(best_lr scratch)
DISTILL_LR=$(best_lr distill)

# 3. Temperature and alpha at the distilled student's learning rate.
best="" bestv=0
for t in $TS; do
  for a in $ALPHAS; do
    name="distill_T${t}_a${a}"
    if [ "$t" = 2 ] && [ "$a" = 0.5 ]; then
      name="distill_lr$DISTILL_LR"
    else
      run "$name" distill --teacher=$TEACHER --hidden=$HIDDEN --lr=$DISTILL_LR --epochs=$EPOCHS \
        --seed=1 --temperature=$t --alpha=$a
    fi
    v=$(val_of "$name")
    if awk "BEGIN{exit !($v > $bestv)}"; then best="$t $a"; bestv=$v; fi
  done
done
read -r BEST_T BEST_A <<<"$best"

# 4. Seeds.
for s in $SEEDS; do
  run "final_scratch_s$s" train --hidden=$HIDDEN --lr=$SCRATCH_LR --epochs=$EPOCHS --seed=$s
  run "final_distill_s$s" distill --teacher=$TEACHER --hidden=$HIDDEN --lr=$DISTILL_LR \
    --epochs=$EPOCHS --seed=$s --temperature=$BEST_T --alpha=$BEST_A
done
printf '{"scratch_lr":"%s","distill_lr":"%s","temperature":%s,"alpha":%s}\n' \
  "$SCRATCH_LR" "$DISTILL_LR" "$BEST_T" "$BEST_A" >"$OUT/chosen.json"
/usr/bin/env python3 tools/bench/kd_table.py "$OUT" >"$OUT/table.md" 2>/dev/null || true
cat "$OUT/chosen.json"
