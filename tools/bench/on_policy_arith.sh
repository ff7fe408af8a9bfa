#!/usr/bin/env bash
# On-policy against off-policy distillation and training from scratch, on a
# task with checkable answers that this script generates: two-digit
# addition written as text ("37+48=85", tools/bench/arith_data.py), a
# character-level tokenizer, held-out problems for evaluation.
#
#   tools/bench/on_policy_arith.sh [OUT]     (default OUT=retort_work/on_policy_arith)
#
# A teacher is trained until evaluated; then, per seed, students 4-8x
# smaller with the same steps and batch: from scratch, off-policy KD
# (top-16 forward KL on corpus sequences), and on-policy KD with lambda =
# 0.5 and 1 and the rkl and jsd losses (prompts: the training problems).
# Each model's greedy answers to the held-out problems are scored by exact
# match, and the teacher's NLL of its sampled answers is measured.
# Writes OUT/results.jsonl (one line a model) and OUT/summary.md.
# Environment: TEACHER_MODEL, STUDENT_MODEL, TEACHER_STEPS, STEPS, SEEDS,
# THREADS.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-retort_work/on_policy_arith}
RETORT=${RETORT:-build/retort}
TEACHER_MODEL=${TEACHER_MODEL:-"d=128,layers=4,heads=4,ffn=344"}
STUDENT_MODEL=${STUDENT_MODEL:-"d=48,layers=2,heads=4,ffn=128"}
TEACHER_STEPS=${TEACHER_STEPS:-3000}
STEPS=${STEPS:-600}
SEEDS=${SEEDS:-"1 2"}
THREADS=${THREADS:-2}
COMMON="--seq_len=64 --batch_size=32 --threads=$THREADS --log_every_steps=50 --lr=3e-3"
RESULTS=$OUT/results.jsonl
mkdir -p "$OUT/runs"
log() { printf '[on_policy_arith] %s\n' "$*" >&2; }

/usr/bin/python3 tools/bench/arith_data.py "$OUT/task" >/dev/null
[ -f "$OUT/corpus/corpus.json" ] || "$RETORT" data prepare --text="$OUT/task/train.txt" \
  --tokenizer="$OUT/task/tokenizer.json" --out_dir="$OUT/corpus" >/dev/null

evaluate() {  # name dir flags
  local name=$1 dir=$2 flags=$3
  "$RETORT" eval --checkpoint="$dir/model" --prompts="$OUT/task/prompts_eval.jsonl" \
    --max_new_tokens=5 --threads="$THREADS" --teacher="$OUT/runs/teacher/model" \
    --json_out="$dir/eval.json" >/dev/null
  /usr/bin/python3 - "$name" "$dir" "$flags" >>"$RESULTS" <<'PY'
import json, sys
name, d, flags = sys.argv[1:]
r = json.load(open(d + "/result.json")); e = json.load(open(d + "/eval.json"))
timing = {}
for line in open(d + "/metrics.jsonl"):
    m = json.loads(line)
    if "on_policy" in m.get("validation", {}):
        timing = m["validation"]["on_policy"]
row = {"name": name, "flags": flags, "steps": r["steps"],
       "train_seconds": r["train_seconds"], "exact_match": e.get("exact_match"),
       "prefix_match": e.get("prefix_match"), "teacher_nll": e.get("teacher_nll"),
       "val_perplexity": r["final_validation"]["perplexity"]}
if timing:
    row["on_policy_steps"] = timing["steps_this_process"]
    row["rollout_share"] = timing["rollout_seconds"] / r["train_seconds"]
    row["scoring_share"] = timing["scoring_seconds"] / r["train_seconds"]
print(json.dumps(row, separators=(",", ":")))
PY
}

run() {  # name flags...
  local name=$1; shift
  local dir=$OUT/runs/$name
  grep -q "\"name\":\"$name\"" "$RESULTS" 2>/dev/null && return 0
  log "$name"
  "$RETORT" lm train $COMMON --data="$OUT/corpus" --overwrite --out_dir="$dir" "$@" 2>"$dir.log" || {
    log "run $name failed; see $dir.log"; exit 1; }
  evaluate "$name" "$dir" "$*"
}

run teacher --model="$TEACHER_MODEL" --steps="$TEACHER_STEPS" --seed=1
T="--teacher=$OUT/runs/teacher/model"
ON="--prompts=$OUT/task/prompts_train.jsonl --rollout_tokens=5 --on_policy_candidates=8 --top_k=16"
for seed in $SEEDS; do
  S="--model=$STUDENT_MODEL --steps=$STEPS --seed=$seed"
  run "scratch_s$seed" $S
  run "offpolicy_s$seed" $S $T --top_k=16 --alpha=0.5
  for loss in rkl jsd; do
    for lambda in 0.5 1; do
      run "onpolicy_${loss}_l${lambda}_s$seed" $S $T $ON --alpha=0.5 \
        --on_policy_fraction=$lambda --on_policy_loss=$loss
    done
  done
done

/usr/bin/python3 - "$RESULTS" "$OUT/summary.md" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = collections.OrderedDict()
for r in rows:
    key = r["name"].rsplit("_s", 1)[0] if r["name"] != "teacher" else "teacher"
    groups.setdefault(key, []).append(r)
lines = ["| model | seeds | exact match (each seed) | mean | teacher NLL of samples (nats/token) | train s |",
         "|---|---|---|---|---|---|"]
for k, rs in groups.items():
    em = [r["exact_match"] for r in rs]
    nll = [r["teacher_nll"] for r in rs]
    lines.append(f"| {k} | {len(rs)} | {', '.join(f'{x:.3f}' for x in em)} | {sum(em)/len(em):.3f} | "
                 f"{', '.join(f'{x:.3f}' for x in nll)} | {sum(r['train_seconds'] for r in rs)/len(rs):.0f} |")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
