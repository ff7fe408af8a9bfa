#!/usr/bin/env bash
# Retort's training engine against the PyTorch (Python) loop a user would
# write instead (tools/bench/pytorch_loop.py, Debian's python3-torch: the
# same LibTorch kernels), side by side in one run on this machine, for the
# classifier and the language-model workloads, each framework at its default
# thread setting and at the others tried. Then language-model data
# parallelism: 2 ranks vs 1 with the same global batch.
#
#   tools/bench/loop_compare.sh [OUT]      (default OUT=retort_work/loop_compare)
#
# Writes OUT/runs.jsonl (one JSON object a run), OUT/summary.json and
# OUT/summary.md (the table docs/performance.md shows). About 10 minutes on a
# 2-vCPU machine; nothing else should run meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-retort_work/loop_compare}
RETORT=${RETORT:-build/retort}
PY=/usr/bin/python3
LOOP=tools/bench/pytorch_loop.py
mkdir -p "$OUT"
: >"$OUT/runs.jsonl"
log() { printf '[loop_compare] %s\n' "$*" >&2; }

# Thread settings: name, retort flags, Python environment and flags.
SETTINGS=("omp1-blas_auto" "omp1-blas1" "omp2-blas2")
retort_threads() {
  case $1 in
    omp1-blas_auto) echo "--threads=1" ;;  # retort's default (--blas_threads=-1)
    omp1-blas1) echo "--threads=1 --blas_threads=1" ;;
    omp2-blas2) echo "--threads=2 --blas_threads=2" ;;
  esac
}
python_env() {
  case $1 in
    omp1-blas_auto) echo "" ;;  # the Python loop's default: OpenBLAS unpinned
    omp1-blas1) echo "OPENBLAS_NUM_THREADS=1" ;;
    omp2-blas2) echo "OPENBLAS_NUM_THREADS=2" ;;
  esac
}
python_threads() { case $1 in omp2-blas2) echo 2 ;; *) echo 1 ;; esac; }

record() {  # workload framework setting rate
  printf '{"workload": "%s", "framework": "%s", "setting": "%s", "rate": %s}\n' \
    "$1" "$2" "$3" "$4" >>"$OUT/runs.jsonl"
  log "$1 | $2 | $3 | $4"
}
result_rate() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
json_rate() { $PY -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])" "$1"; }

# Inputs: a classifier teacher, a token corpus and a Llama teacher.
CLS=(--epochs=1 --train_limit=25600 --log_every_steps=0 --overwrite)
if [ ! -f "$OUT/teacher/best.pt" ]; then
  log "training the classifier teacher (1 epoch)"
  $RETORT train --hidden=1200,1200 --dropout=0.5 "${CLS[@]}" --out_dir="$OUT/teacher" 2>/dev/null
fi
if [ ! -f "$OUT/corpus/train.tokens" ]; then
  log "preparing the KJV token corpus (vocabulary 4096)"
  $RETORT data prepare --out_dir="$OUT/corpus" >/dev/null
fi
LM=(--data="$OUT/corpus" --seq_len=128 --batch_size=16 --steps=60 --log_every_steps=0 --overwrite)
if [ ! -f "$OUT/lm_teacher/model/config.json" ]; then
  log "making the d256 L4 Llama teacher"
  $RETORT lm train "${LM[@]}" --steps=2 --model=d=256,layers=4,heads=8,ffn=688,tied \
    --out_dir="$OUT/lm_teacher" >/dev/null 2>&1
fi

for s in "${SETTINGS[@]}"; do
  rt=$(retort_threads "$s")
  pe=$(python_env "$s")
  pt=$(python_threads "$s")
  # shellcheck disable=SC2086
  {
    $RETORT train $rt --hidden=1200,1200 --dropout=0.5 "${CLS[@]}" --out_dir="$OUT/r" 2>/dev/null
    record mlp-teacher retort "$s" "$(result_rate "$OUT/r/result.json" samples_per_second)"
    record mlp-teacher pytorch "$s" "$(env $pe $PY $LOOP --mode=train --hidden=1200,1200 --dropout=0.5 \
      --threads="$pt" --steps=200 | json_rate samples_per_second)"

    $RETORT train $rt --hidden=800,800 "${CLS[@]}" --out_dir="$OUT/r" 2>/dev/null
    record mlp-labels retort "$s" "$(result_rate "$OUT/r/result.json" samples_per_second)"
    record mlp-labels pytorch "$s" "$(env $pe $PY $LOOP --mode=train --hidden=800,800 \
      --threads="$pt" --steps=200 | json_rate samples_per_second)"

    $RETORT distill $rt --teacher="$OUT/teacher/best.pt" --teacher_cache_mb=0 --hidden=800,800 \
      --temperature=2 "${CLS[@]}" --out_dir="$OUT/r" 2>/dev/null
    record mlp-distill retort "$s" "$(result_rate "$OUT/r/result.json" samples_per_second)"
    record mlp-distill pytorch "$s" "$(env $pe $PY $LOOP --mode=distill --hidden=800,800 \
      --teacher_hidden=1200,1200 --threads="$pt" --steps=200 | json_rate samples_per_second)"

    $RETORT lm train $rt "${LM[@]}" --model=d=128,layers=2,heads=4,ffn=344,tied \
      --out_dir="$OUT/r" 2>/dev/null >/dev/null
    record lm-labels retort "$s" "$(result_rate "$OUT/r/result.json" tokens_per_second)"
    record lm-labels pytorch "$s" "$(env $pe $PY $LOOP --mode=lm --batch_size=16 --seq_len=128 \
      --steps=60 --threads="$pt" | json_rate tokens_per_second)"

    $RETORT lm train $rt "${LM[@]}" --model=d=128,layers=2,heads=4,ffn=344,tied \
      --teacher="$OUT/lm_teacher/model" --top_k=64 --out_dir="$OUT/r" 2>/dev/null >/dev/null
    record lm-distill retort "$s" "$(result_rate "$OUT/r/result.json" tokens_per_second)"
    record lm-distill pytorch "$s" "$(env $pe $PY $LOOP --mode=lm --batch_size=16 --seq_len=128 \
      --steps=30 --teacher_model=d=256,layers=4,heads=8,ffn=688 --top_k=64 --threads="$pt" |
      json_rate tokens_per_second)"
  }
done

# Language-model data parallelism: the same global batch on 1 and 2 ranks.
log "lm data parallelism: 1 rank vs 2 ranks (global batch 32)"
$RETORT lm train "${LM[@]}" --batch_size=32 --model=d=128,layers=2,heads=4,ffn=344,tied \
  --out_dir="$OUT/dp1" 2>/dev/null >/dev/null
record lm-dp-1rank retort default "$(result_rate "$OUT/dp1/result.json" tokens_per_second)"
$PY -m torch.distributed.run --no_python --nproc_per_node=2 --redirects=2 --tee=2 \
  --log_dir="$OUT/dp_logs" "$RETORT" lm train "${LM[@]}" --batch_size=32 \
  --model=d=128,layers=2,heads=4,ffn=344,tied --out_dir="$OUT/dp2" >/dev/null 2>&1
# Rank 0's rate counts the global batch (every rank's tokens).
record lm-dp-2ranks retort default "$(result_rate "$OUT/dp2/result.json" tokens_per_second)"

$PY - "$OUT" <<'EOF'
import json, sys, platform
out = sys.argv[1]
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
rate = {(r["workload"], r["framework"], r["setting"]): r["rate"] for r in runs}
names = {"mlp-teacher": "MLP 784-1200-1200-10 dropout 0.5, labels (samples/s)",
         "mlp-labels": "MLP 784-800-800-10, labels (samples/s)",
         "mlp-distill": "same, distilled from the 1200-1200 teacher, no cache (samples/s)",
         "lm-labels": "Llama d128 L2 tied, 16x128, labels (tokens/s)",
         "lm-distill": "same, distilled from d256 L4 in process, top-64 (tokens/s)"}
default = "omp1-blas_auto"
rows, summary = [], {"machine": platform.processor() or platform.machine(), "workloads": {}}
for w, name in names.items():
    r = {s: rate.get((w, "retort", s)) for s in ("omp1-blas_auto", "omp1-blas1", "omp2-blas2")}
    p = {s: rate.get((w, "pytorch", s)) for s in r}
    rb = max(r, key=lambda s: r[s] or 0)
    pb = max(p, key=lambda s: p[s] or 0)
    entry = {"retort": r, "pytorch": p, "ratio_defaults": r[default] / p[default],
             "ratio_best": r[rb] / p[pb], "retort_best": rb, "pytorch_best": pb}
    summary["workloads"][w] = entry
    rows.append(f"| {name} | {r[default]:,.0f} | {r[rb]:,.0f} ({rb}) | {p[default]:,.0f} | "
                f"{p[pb]:,.0f} ({pb}) | {entry['ratio_defaults']:.2f}x | {entry['ratio_best']:.2f}x |")
one, two = rate.get(("lm-dp-1rank", "retort", "default")), rate.get(("lm-dp-2ranks", "retort", "default"))
summary["lm_data_parallel"] = {"one_rank": one, "two_ranks": two, "speedup": two / one}
md = ["| workload | retort default | retort best | PyTorch default | PyTorch best | ratio (defaults) | ratio (best vs best) |",
      "|---|---|---|---|---|---|---|"] + rows
md.append("")
md.append(f"LM data parallelism, global batch 32x128: 1 rank {one:,.0f} tokens/s, 2 ranks {two:,.0f} tokens/s ({two / one:.2f}x)")
open(f"{out}/summary.md", "w").write("\n".join(md) + "\n")
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print("\n".join(md))
EOF
