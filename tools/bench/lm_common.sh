# Shared by tools/bench/lm_distill.sh and lm_cache.sh (sourced, not run):
# the corpus, the common training flags and run(), which trains one student
# configuration into OUT/runs/NAME unless OUT/results.jsonl already holds it,
# evaluates its exported model on all validation tokens against OUT's
# teacher, and appends one JSON line to OUT/results.jsonl.
OUT=${OUT:-bench_out/lm}
RETORT=${RETORT:-./build/retort}
TEACHER_MODEL=${TEACHER_MODEL:-"d=256,layers=4,heads=4,ffn=688"}
STUDENT_MODEL=${STUDENT_MODEL:-"d=128,layers=2,heads=4,ffn=344,tied"}
TEACHER_STEPS=${TEACHER_STEPS:-1200}
STEPS=${STEPS:-400}
SEEDS=${SEEDS:-"1 2"}
COMMON="--seq_len=128 --batch_size=16 --threads=${THREADS:-2} --log_every_steps=10"
RESULTS=$OUT/results.jsonl
DATA=$OUT/corpus
mkdir -p "$OUT/runs"

run() {
  local name=$1; shift
  local dir=$OUT/runs/$name
  grep -q "\"name\":\"$name\"" "$RESULTS" 2>/dev/null && return 0
  echo "[lm_bench] $name" >&2
  $RETORT lm train $COMMON --data="$DATA" --overwrite --out_dir="$dir" "$@" 2>"$dir.log" || {
    echo "run $name failed; see $dir.log" >&2; exit 1; }
  $RETORT eval --checkpoint="$dir/model" --data="$DATA" --seq_len=128 --batch_size=16 \
    --threads="${THREADS:-2}" --teacher="$OUT/runs/teacher/model" --json_out="$dir/eval.json" >/dev/null
  /usr/bin/python3 - "$name" "$dir" "$*" >>"$RESULTS" <<'PY'
import json, sys
name, d, flags = sys.argv[1:]
r = json.load(open(d + "/result.json")); e = json.load(open(d + "/eval.json"))
print(json.dumps({"name": name, "flags": flags, "steps": r["steps"], "tokens": r["tokens"],
                  "tokens_per_second": r["tokens_per_second"], "train_seconds": r["train_seconds"],
                  "perplexity": e["perplexity"], "loss": e["loss"], "top1": e["top1_accuracy"],
                  "teacher_agreement": e["teacher_agreement"], "eval_tokens": e["tokens"]},
                 separators=(",", ":")))
PY
}
