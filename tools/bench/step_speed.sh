#!/usr/bin/env bash
# Language-model training speed on the KJV corpus, side by side in one run on
# this machine, each setting alternated ROUNDS times:
#   - labels only, and fed from teacher-logit caches (top-k and sampled),
#     each with the caching CPU allocator (--cpu_cache_mb, the default) and
#     without it (glibc alone): the cache-fed / labels-only ratio;
#   - `retort teacher dump` against the teacher's forward pass alone
#     (`retort bench lm`'s teacher row) on the same batches: the dump ratio.
#
#   tools/bench/step_speed.sh CORPUS TEACHER TOPK_CACHE SAMPLED_CACHE [OUT]
#
# CORPUS is a `retort data prepare` directory, TEACHER the Llama directory the
# caches were dumped from (tools/bench/lm_distill.sh and lm_cache.sh make all
# four under bench_out/lm). Writes OUT/runs.jsonl, OUT/summary.json and
# OUT/summary.md (default OUT=retort_work/step_speed). About 8 minutes on 2
# vCPUs; nothing else should run meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORPUS=$1
TEACHER=$2
TOPK=$3
SAMPLED=$4
OUT=${5:-retort_work/step_speed}
RETORT=${RETORT:-build/retort}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-100}
DUMP_LINES=${DUMP_LINES:-3000}
mkdir -p "$OUT"
: >"$OUT/runs.jsonl"
log() { printf '[step_speed] %s\n' "$*" >&2; }
record() { printf '%s\n' "$1" >>"$OUT/runs.jsonl"; log "$1"; }

TRAIN=(lm train --data="$CORPUS" --seq_len=128 --batch_size=16 --threads=1
  --model=d=128,layers=2,heads=4,ffn=344,tied --steps="$STEPS" --lr=3e-3 --seed=1
  --eval_sequences=16 --log_every_steps=0 --overwrite --out_dir="$OUT/run")
KD=(--temperature=1 --alpha=0.5 --divergence=fkl)
for round in $(seq "$ROUNDS"); do
  for mb in 2048 0; do
    for feed in labels topk sampled; do
      case $feed in
        labels) extra=() ;;
        topk) extra=(--teacher_cache="$TOPK" "${KD[@]}") ;;
        sampled) extra=(--teacher_cache="$SAMPLED" "${KD[@]}") ;;
      esac
      "$RETORT" "${TRAIN[@]}" --cpu_cache_mb="$mb" "${extra[@]}" >/dev/null 2>"$OUT/run.log"
      rate=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens_per_second'])" "$OUT/run/result.json")
      record "{\"kind\": \"train\", \"round\": $round, \"feed\": \"$feed\", \"cpu_cache_mb\": $mb, \"tokens_per_second\": $rate}"
    done
  done
done

# The dump against the forward pass alone, on the first DUMP_LINES lines of
# the corpus's text with its tokenizer.
SMALL=$OUT/dump_corpus
if [ ! -f "$SMALL/corpus.json" ]; then
  head -n "$DUMP_LINES" "$CORPUS/corpus.txt" >"$OUT/dump_text.txt"
  tok=""
  for f in "$CORPUS/tokenizer.json" "$CORPUS/tokenizer.model"; do [ -f "$f" ] && tok=$f; done
  "$RETORT" data prepare --text="$OUT/dump_text.txt" --tokenizer="$tok" --out_dir="$SMALL" >/dev/null
fi
for round in $(seq "$ROUNDS"); do
  "$RETORT" bench lm --checkpoint="$TEACHER" --seq_len=128 --batch_size=16 --bench_seconds=10 \
    --threads=1 --json_out="$OUT/bench_lm.json" >/dev/null 2>"$OUT/bench_lm.log"
  forward=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['teacher_forward'][0]['tokens_per_second'])" "$OUT/bench_lm.json")
  record "{\"kind\": \"forward\", \"round\": $round, \"tokens_per_second\": $forward}"
  for enc in "topk --cache_top_k=32" "sampled --cache_samples=32"; do
    # shellcheck disable=SC2086
    "$RETORT" teacher dump --data="$SMALL" --seq_len=128 --temperature=1 --threads=1 \
      --batch_size=16 --teacher="$TEACHER" --out_dir="$OUT/dump" --overwrite \
      --cache_encoding=$enc >/dev/null 2>"$OUT/dump.log"
    rate=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens_per_second'])" "$OUT/dump/dump_result.json")
    record "{\"kind\": \"dump\", \"round\": $round, \"encoding\": \"${enc%% *}\", \"tokens_per_second\": $rate}"
  done
done

/usr/bin/python3 - "$OUT" <<'EOF'
import json, statistics, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(out + "/runs.jsonl")]
def med(**k):
    xs = [r["tokens_per_second"] for r in runs if all(r.get(a) == b for a, b in k.items())]
    return statistics.median(xs)
s = {"train": {}, "dump": {}}
lines = ["| feed | tokens/s, caching allocator | tokens/s, glibc alone | allocator gain | / labels-only (caching) |",
         "|---|---|---|---|---|"]
labels = med(kind="train", feed="labels", cpu_cache_mb=2048)
for feed in ("labels", "topk", "sampled"):
    a, g = med(kind="train", feed=feed, cpu_cache_mb=2048), med(kind="train", feed=feed, cpu_cache_mb=0)
    s["train"][feed] = {"caching": a, "glibc": g, "ratio_to_labels": a / labels}
    lines.append(f"| {feed} | {a:,.0f} | {g:,.0f} | {a / g:.2f}x | {a / labels:.2f} |")
fwd = med(kind="forward")
lines += ["", "| dump encoding | dump tokens/s | forward alone tokens/s | ratio |", "|---|---|---|---|"]
for enc in ("topk", "sampled"):
    d = med(kind="dump", encoding=enc)
    s["dump"][enc] = {"dump": d, "forward": fwd, "ratio": d / fwd}
    lines.append(f"| {enc} | {d:,.0f} | {fwd:,.0f} | {d / fwd:.2f} |")
open(out + "/summary.md", "w").write("\n".join(lines) + "\n")
json.dump(s, open(out + "/summary.json", "w"), indent=2)
print("\n".join(lines))
EOF
