#!/usr/bin/env bash
# Generation throughput, side by side in one run on this machine: retort's
# key/value-cached decoding, retort recomputing the prefix for every token,
# and a PyTorch (Python) loop with a key/value cache
# (tools/bench/pytorch_generate.py, Debian's python3-torch) on the same
# weights and prompts, greedy, at 1 and 2 threads.
#
#   tools/bench/generate.sh [OUT]      (default OUT=retort_work/generate)
#
# MODEL, BATCH, PROMPT, NEW override the shape. Writes OUT/runs.jsonl, and
# OUT/summary.md (the table docs/performance.md shows). A few minutes on a
# 2-vCPU machine; nothing else should run meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-retort_work/generate}
RETORT=${RETORT:-build/retort}
MODEL=${MODEL:-d=256,layers=4,heads=4,ffn=688,vocab=4096,ctx=256}
BATCH=${BATCH:-8}
PROMPT=${PROMPT:-32}
NEW=${NEW:-96}
mkdir -p "$OUT"
: >"$OUT/runs.jsonl"
log() { printf '[generate] %s\n' "$*" >&2; }

for threads in 1 2; do
  log "retort, $threads thread(s)"
  "$RETORT" bench generate --model="$MODEL" --batch_size="$BATCH" --prompt_tokens="$PROMPT" \
    --max_new_tokens="$NEW" --seed=1 --threads="$threads" --work_dir="$OUT" \
    --json_out="$OUT/retort_t$threads.json" >/dev/null
  log "pytorch, $threads thread(s)"
  OPENBLAS_NUM_THREADS=$threads /usr/bin/python3 tools/bench/pytorch_generate.py \
    --checkpoint="$OUT/bench_generate/model" --batch_size="$BATCH" --prompt_tokens="$PROMPT" \
    --max_new_tokens="$NEW" --seed=1 --threads="$threads" >"$OUT/pytorch_t$threads.json"
  /usr/bin/python3 - "$OUT" "$threads" <<'PY'
import json, sys
out, t = sys.argv[1], sys.argv[2]
r = json.load(open(f"{out}/retort_t{t}.json"))
p = json.loads(open(f"{out}/pytorch_t{t}.json").read())
same = sum(a == b for ra, rb in zip(r["tokens"], p["tokens"]) for a, b in zip(ra, rb))
total = sum(len(row) for row in r["tokens"])
run = {"threads": int(t), "model": r["model"], "batch": r["batch"],
       "prompt_tokens": r["prompt_tokens"], "new_tokens": r["new_tokens"],
       "retort_cache_tps": r["cache"]["tokens_per_second"],
       "retort_recompute_tps": r["recompute"]["tokens_per_second"],
       "pytorch_cache_tps": p["tokens_per_second"],
       "cache_vs_recompute": r["speedup"],
       "retort_vs_pytorch": r["cache"]["tokens_per_second"] / p["tokens_per_second"],
       "retort_modes_same_tokens": r["same_tokens"],
       "greedy_tokens_equal_to_pytorch": f"{same}/{total}"}
with open(f"{out}/runs.jsonl", "a") as f:
    f.write(json.dumps(run) + "\n")
PY
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
lines = ["| threads | retort, cache | retort, recompute | PyTorch loop, cache | cache / recompute | retort / PyTorch | greedy tokens equal |",
         "|---|---|---|---|---|---|---|"]
for r in runs:
    lines.append(f"| {r['threads']} | {r['retort_cache_tps']:.0f} | {r['retort_recompute_tps']:.0f} | "
                 f"{r['pytorch_cache_tps']:.0f} | {r['cache_vs_recompute']:.2f} | {r['retort_vs_pytorch']:.2f} | "
                 f"{r['greedy_tokens_equal_to_pytorch']} |")
head = runs[0]
text = (f"{head['model']}, batch {head['batch']}, {head['prompt_tokens']}-token prompts, "
        f"{head['new_tokens']} new tokens each, greedy; tokens/s of new tokens\n\n" + "\n".join(lines) + "\n")
open(f"{out}/summary.md", "w").write(text)
print(text)
PY
