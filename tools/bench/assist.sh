#!/usr/bin/env bash
# Reproduces the assistant-layer figures of docs/results.md: logits only vs
# logits + feature matching vs a teacher-assistant chain, at equal student
# budgets, on Fashion-MNIST and on the KJV language-model corpus:
#
#   tools/bench/assist.sh [OUT_DIR]       (default: bench_out/assist)
#
# Environment: PARTS ("fm lm"), SEEDS ("1 2"), FM_EPOCHS (10), LM_STEPS
# (250), FM_FEATURES ("1:mse 1:cosine 0.1:mse" probed on seed 1, the best on
# validation used for every seed), LM_FEATURES ("1:cosine"), THREADS (2).
# Runs already in OUT_DIR/results.jsonl are not run again; the teachers are
# trained once. tools/bench/assist_table.py writes OUT_DIR/table.md and
# OUT_DIR/assist.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench_out/assist}
RETORT=${RETORT:-./build/retort}
THREADS=${THREADS:-2}
PARTS=${PARTS:-"fm lm"}
SEEDS=${SEEDS:-"1 2"}
FM_EPOCHS=${FM_EPOCHS:-10}
LM_STEPS=${LM_STEPS:-250}
FM_FEATURES=${FM_FEATURES:-"1:mse 1:cosine 0.1:mse"}
LM_FEATURES=${LM_FEATURES:-"1:cosine"}
RESULTS=$OUT/results.jsonl
mkdir -p "$OUT/runs"
touch "$RESULTS"

done_already() { grep -q "\"name\":\"$1\"" "$RESULTS"; }

# record NAME KIND FLAGS RESULT_JSON EVAL_JSON [ASSISTANT_RESULT_JSON]
record() {
  /usr/bin/python3 - "$@" >>"$RESULTS" <<'PY'
import json, sys
name, kind, flags, result, evaluation = sys.argv[1:6]
r = json.load(open(result)); e = json.load(open(evaluation))
line = {"name": name, "kind": kind, "flags": flags}
if kind == "fm":
    line.update(val_acc=r["best_validation_accuracy"], test_acc=e["accuracy"],
                train_seconds=r["train_seconds"], samples_per_second=r["samples_per_second"])
else:
    line.update(perplexity=e["perplexity"], top1=e["top1_accuracy"],
                teacher_agreement=e["teacher_agreement"], train_seconds=r["train_seconds"],
                tokens_per_second=r["tokens_per_second"])
if len(sys.argv) > 6:
    line["assistant_train_seconds"] = json.load(open(sys.argv[6]))["train_seconds"]
print(json.dumps(line, separators=(",", ":")))
PY
}

# --- Fashion-MNIST ---------------------------------------------------------------
fm() {
  local teacher=$OUT/runs/fm_teacher
  if [ ! -f "$teacher/result.json" ]; then
    echo "[assist] Fashion-MNIST teacher (cnn 32-64-128)" >&2
    $RETORT train --arch=cnn --hidden=32,64,128 --dropout=0.5 --epochs=10 --lr=1e-3 --seed=1 \
      --threads="$THREADS" --overwrite --out_dir="$teacher" 2>"$teacher.log"
  fi
  local common="--arch=mlp --hidden=128 --epochs=$FM_EPOCHS --lr=3e-3 --temperature=1 --alpha=0.5
    --threads=$THREADS --log_every_steps=0 --teacher=$teacher/best.pt"
  # run NAME SEED FLAGS...: distill, evaluate best.pt on the test set, record.
  run() {
    local name=$1 seed=$2; shift 2
    local dir=$OUT/runs/$name
    done_already "$name" && return 0
    echo "[assist] $name" >&2
    $RETORT distill $common --seed="$seed" --overwrite --out_dir="$dir" "$@" 2>"$dir.log" || {
      echo "run $name failed; see $dir.log" >&2; exit 1; }
    $RETORT eval --checkpoint="$dir/best.pt" --split=test --threads="$THREADS" \
      --json_out="$dir/test.json" >/dev/null
    record "$name" fm "$*" "$dir/result.json" "$dir/test.json"
  }
  # Feature settings probed on seed 1; the best validation accuracy wins.
  local best="" best_acc=-1
  for spec in $FM_FEATURES; do
    run "fm_features_${spec/:/_}_s1" 1 --feature_weight="${spec%%:*}" --feature_loss="${spec##*:}"
    acc=$(grep "\"name\":\"fm_features_${spec/:/_}_s1\"" "$RESULTS" |
      /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["val_acc"])')
    if /usr/bin/python3 -c "import sys; sys.exit(0 if $acc > $best_acc else 1)"; then
      best=$spec best_acc=$acc
    fi
  done
  echo "[assist] Fashion-MNIST feature setting for every seed: $best (val $best_acc)" >&2
  for seed in $SEEDS; do
    run "fm_logits_s$seed" "$seed"
    [ "$seed" = 1 ] || run "fm_features_${best/:/_}_s$seed" "$seed" \
      --feature_weight="${best%%:*}" --feature_loss="${best##*:}"
    local name=fm_chain_s$seed dir=$OUT/runs/fm_chain_s$seed
    if ! done_already "$name"; then
      echo "[assist] $name" >&2
      $RETORT chain $common --assistant_arch=mlp --assistant_hidden=512 --seed="$seed" \
        --overwrite --out_dir="$dir" >"$dir.txt" 2>"$dir.log" || {
        echo "run $name failed; see $dir.log" >&2; exit 1; }
      /usr/bin/python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]; c = json.load(open(d + "/chain.json"))
json.dump(c["student"]["test"], open(d + "/test.json", "w"))
PY
      record "$name" fm "chain via mlp 784-512-10" "$dir/student/result.json" "$dir/test.json" \
        "$dir/assistant/result.json"
    fi
  done
}

# --- Language model ----------------------------------------------------------------
lm() {
  local data=$OUT/corpus
  [ -f "$data/valid.tokens" ] ||
    $RETORT data prepare --out_dir="$data" --vocab_size=4096 >"$OUT/corpus.log" 2>&1
  local teacher=$OUT/runs/teacher
  local common="--seq_len=128 --batch_size=16 --threads=$THREADS --log_every_steps=10 --data=$data"
  if [ ! -f "$teacher/model/config.json" ]; then
    echo "[assist] language-model teacher (llama d256 L4, 600 steps)" >&2
    $RETORT lm train $common --model=d=256,layers=4,heads=4,ffn=688 --steps=600 --lr=2e-3 \
      --seed=1 --eval_every=200 --eval_sequences=96 --overwrite --out_dir="$teacher" \
      2>"$teacher.log"
  fi
  local student="--model=d=128,layers=2,heads=4,ffn=344,tied --steps=$LM_STEPS --lr=3e-3
    --temperature=1 --alpha=0.5 --divergence=fkl --top_k=64"
  evaluate() {
    $RETORT eval --checkpoint="$1" --data="$data" --seq_len=128 --batch_size=16 \
      --threads="$THREADS" --teacher="$teacher/model" --json_out="$2" >/dev/null
  }
  run() {
    local name=$1 seed=$2; shift 2
    local dir=$OUT/runs/$name
    done_already "$name" && return 0
    echo "[assist] $name" >&2
    $RETORT lm train $common $student --teacher="$teacher/model" --seed="$seed" --overwrite \
      --out_dir="$dir" "$@" 2>"$dir.log" || { echo "run $name failed; see $dir.log" >&2; exit 1; }
    evaluate "$dir/model" "$dir/eval.json"
    record "$name" lm "$*" "$dir/result.json" "$dir/eval.json"
  }
  for seed in $SEEDS; do
    run "lm_logits_s$seed" "$seed"
    for spec in $LM_FEATURES; do
      run "lm_features_${spec/:/_}_s$seed" "$seed" --feature_weight="${spec%%:*}" \
        --feature_loss="${spec##*:}"
    done
    local name=lm_chain_s$seed dir=$OUT/runs/lm_chain_s$seed
    if ! done_already "$name"; then
      echo "[assist] $name" >&2
      $RETORT lm chain $common $student --teacher="$teacher/model" \
        --assistant_model=d=192,layers=3,heads=4,ffn=512,tied --seed="$seed" --overwrite \
        --out_dir="$dir" >"$dir.txt" 2>"$dir.log" || {
        echo "run $name failed; see $dir.log" >&2; exit 1; }
      evaluate "$dir/student/model" "$dir/eval.json"
      record "$name" lm "chain via llama d192 L3" "$dir/student/result.json" "$dir/eval.json" \
        "$dir/assistant/result.json"
    fi
  done
}

for part in $PARTS; do "$part"; done
/usr/bin/python3 tools/bench/assist_table.py "$OUT"
