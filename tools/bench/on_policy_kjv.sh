#!/usr/bin/env bash
# On-policy against off-policy distillation on the KJV corpus, at equal
# student steps: validation perplexity, and the teacher's negative
# log-likelihood of what the student writes after held-out prompts (`retort
# eval --prompts`, nats per token), the quantity on-policy training lowers.
#
#   tools/bench/on_policy_kjv.sh CORPUS TEACHER [OUT]
#
# CORPUS is a `retort data prepare` directory and TEACHER a Llama directory
# trained on it (tools/bench/lm_distill.sh makes both under bench_out/lm).
# Students are lm_distill.sh's (d128 L2 tied, STEPS steps of 16 x 128
# tokens) for each of SEEDS: scratch, off-policy (top-64 forward KL, alpha
# 0.5), and on-policy generalised JSD at lambda 0.5 and 1 (32-token prompts
# from the corpus, 32 sampled tokens, 16 candidates joined with the
# teacher's top 64). Writes OUT/results.jsonl (a line a run) and
# OUT/summary.md; runs already in results.jsonl are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORPUS=$1
TEACHER=$2
OUT=${3:-retort_work/on_policy_kjv}
RETORT=${RETORT:-build/retort}
STEPS=${STEPS:-250}
SEEDS=${SEEDS:-"1 2"}
THREADS=${THREADS:-1}
PROMPTS=${PROMPTS:-200}
mkdir -p "$OUT/runs"
RESULTS=$OUT/results.jsonl
log() { printf '[on_policy_kjv] %s\n' "$*" >&2; }

# Held-out prompts: the first 8 words of the last PROMPTS lines of the
# corpus text that have at least 16 words (the rest is the reference).
/usr/bin/python3 - "$CORPUS/corpus.txt" "$OUT/prompts.jsonl" "$PROMPTS" <<'PY'
import json, sys
lines = [l.split() for l in open(sys.argv[1], encoding="utf-8")]
lines = [w for w in lines if len(w) >= 16][-int(sys.argv[3]):]
with open(sys.argv[2], "w") as f:
    for w in lines:
        f.write(json.dumps({"prompt": " ".join(w[:8]), "answer": " ".join(w[8:])}) + "\n")
PY

COMMON=(--data="$CORPUS" --seq_len=128 --batch_size=16 --threads="$THREADS"
  --model=d=128,layers=2,heads=4,ffn=344,tied --steps="$STEPS" --lr=3e-3 --eval_every=50
  --eval_sequences=96 --log_every_steps=50 --overwrite)
T=(--teacher="$TEACHER" --top_k=64 --temperature=1 --alpha=0.5)
ON=(--prompt_tokens=32 --rollout_tokens=32 --on_policy_candidates=16 --on_policy_loss=jsd)

run() {  # name flags...
  local name=$1; shift
  local dir=$OUT/runs/$name
  grep -q "\"name\":\"$name\"" "$RESULTS" 2>/dev/null && return 0
  log "$name"
  "$RETORT" lm train "${COMMON[@]}" --out_dir="$dir" "$@" 2>"$dir.log" >/dev/null || {
    log "run $name failed; see $dir.log"; exit 1; }
  "$RETORT" eval --checkpoint="$dir/model" --prompts="$OUT/prompts.jsonl" --max_new_tokens=32 \
    --teacher="$TEACHER" --threads="$THREADS" --json_out="$dir/eval.json" >/dev/null 2>>"$dir.log"
  /usr/bin/python3 - "$name" "$dir" "$*" >>"$RESULTS" <<'PY'
import json, sys
name, d, flags = sys.argv[1:]
r = json.load(open(d + "/result.json")); e = json.load(open(d + "/eval.json"))
print(json.dumps({"name": name, "flags": flags, "steps": r["steps"],
                  "train_seconds": r["train_seconds"],
                  "val_perplexity": r["final_validation"]["perplexity"],
                  "teacher_nll": e.get("teacher_nll"), "prefix_match": e.get("prefix_match")},
                 separators=(",", ":")))
PY
}

for seed in $SEEDS; do
  run "scratch_s$seed" --seed="$seed"
  run "offpolicy_s$seed" --seed="$seed" "${T[@]}"
  run "onpolicy_jsd_l0.5_s$seed" --seed="$seed" "${T[@]}" "${ON[@]}" --on_policy_fraction=0.5
  run "onpolicy_jsd_l1_s$seed" --seed="$seed" "${T[@]}" "${ON[@]}" --on_policy_fraction=1
done

/usr/bin/python3 - "$RESULTS" "$OUT/summary.md" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = collections.OrderedDict()
for r in rows:
    groups.setdefault(r["name"].rsplit("_s", 1)[0], []).append(r)
lines = ["| student | seeds | validation perplexity (each seed) | mean | teacher NLL of samples (each seed) | mean | train s |",
         "|---|---|---|---|---|---|---|"]
for k, rs in groups.items():
    ppl = [r["val_perplexity"] for r in rs]; nll = [r["teacher_nll"] for r in rs]
    lines.append(f"| {k} | {len(rs)} | {', '.join(f'{x:.2f}' for x in ppl)} | {sum(ppl)/len(ppl):.2f} | "
                 f"{', '.join(f'{x:.3f}' for x in nll)} | {sum(nll)/len(nll):.3f} | "
                 f"{sum(r['train_seconds'] for r in rs)/len(rs):.0f} |")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
