#!/usr/bin/env bash
# Reproduces the compaction figures of docs/results.md (quantization, GGUF
# sizes, pruning curves) on the build machine:
#
#   tools/bench/compact.sh [OUT_DIR]     (default: bench_out/compact)
#
# 1. The language-model student of docs/results.md (llama d128 L2 tied,
#    0.92M parameters, 250 steps on the KJV Bible) and a Fashion-MNIST MLP
#    784-128-10 (the demo's student, 10 epochs), unless already trained.
# 2. `retort quantize` with every scheme, on both.
# 3. `retort export --format=gguf` for every GGUF type (file sizes).
# 4. `retort prune`: unstructured (magnitude, activation) over a sparsity
#    sweep and structured (MLP neurons) over a fraction sweep, on both;
#    attention heads of the language model; channels of a Fashion-MNIST CNN.
# 5. `retort slice` at 10, 20, 25 and 30 %.
# 6. Recovery distillation of the pruned and sliced models, and a control.
# tools/bench/compact_table.py then writes OUT_DIR/table.md,
# OUT_DIR/compact.json and OUT_DIR/prune_curves.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench_out/compact}
RETORT=${RETORT:-./build/retort}
THREADS=${THREADS:-2}
mkdir -p "$OUT/quantize" "$OUT/prune" "$OUT/gguf"
DATA=$OUT/corpus
LM=$OUT/lm_student/model
MLP=$OUT/mlp_student/best.pt
CNN=$OUT/cnn/best.pt
EVAL="--data=$DATA --seq_len=128 --batch_size=16 --threads=$THREADS"

[ -f "$DATA/valid.tokens" ] || $RETORT data prepare --out_dir="$DATA" --vocab_size=4096 >"$OUT/corpus.log" 2>&1
if [ ! -f "$LM/config.json" ]; then
  echo "[compact] training the language-model student" >&2
  $RETORT lm train --data="$DATA" --model=d=128,layers=2,heads=4,ffn=344,tied --steps=250 \
    --lr=3e-3 --seed=1 --seq_len=128 --batch_size=16 --threads="$THREADS" --log_every_steps=50 \
    --overwrite --out_dir="$OUT/lm_student" 2>"$OUT/lm_student.log"
fi
if [ ! -f "$MLP" ]; then
  echo "[compact] training the Fashion-MNIST MLP student" >&2
  $RETORT train --arch=mlp --hidden=128 --epochs=10 --seed=1 --threads="$THREADS" \
    --overwrite --out_dir="$OUT/mlp_student" 2>"$OUT/mlp_student.log"
fi

for q in int8 int8-g32 int4-g32 int4-g64 int4-g128; do
  [ -f "$OUT/quantize/lm-$q/quantize.json" ] || $RETORT quantize --checkpoint="$LM" --quantize=$q \
    $EVAL --out_dir="$OUT/quantize/lm-$q" >"$OUT/quantize/lm-$q.txt"
  [ -f "$OUT/quantize/mlp-$q/quantize.json" ] || $RETORT quantize --checkpoint="$MLP" --quantize=$q \
    --threads="$THREADS" --out_dir="$OUT/quantize/mlp-$q" >"$OUT/quantize/mlp-$q.txt"
done

for t in f32 f16 q8_0 q4_0; do
  $RETORT export --checkpoint="$LM" --format=gguf --gguf_type=$t --out="$OUT/gguf/student-$t.gguf"
done

for method in magnitude activation; do
  for s in 0.1 0.2 0.3 0.4 0.5 0.6 0.7; do
    d=$OUT/prune/lm-$method-s$s
    [ -f "$d/prune.json" ] || $RETORT prune --checkpoint="$LM" --method=$method --sparsity=$s \
      $EVAL --out_dir="$d" >"$d.txt" 2>"$d.log"
    d=$OUT/prune/mlp-$method-s$s
    [ -f "$d/prune.json" ] || $RETORT prune --checkpoint="$MLP" --method=$method --sparsity=$s \
      --threads="$THREADS" --out_dir="$d" >"$d.txt" 2>"$d.log"
  done
  for f in 0.125 0.25 0.375 0.5 0.625; do
    d=$OUT/prune/lm-$method-neurons$f
    [ -f "$d/prune.json" ] || $RETORT prune --checkpoint="$LM" --method=$method --structured \
      --fraction=$f $EVAL --out_dir="$d" >"$d.txt" 2>"$d.log"
    d=$OUT/prune/mlp-$method-neurons$f
    [ -f "$d/prune.json" ] || $RETORT prune --checkpoint="$MLP" --method=$method --structured \
      --fraction=$f --threads="$THREADS" --out_dir="$d" >"$d.txt" 2>"$d.log"
  done
done
# Attention heads of the language model (4 heads, no grouping: 1, 2 or 3 go).
for method in magnitude activation; do
  for f in 0.25 0.5 0.75; do
    d=$OUT/prune/lm-$method-heads$f
    [ -f "$d/prune.json" ] || $RETORT prune --checkpoint="$LM" --method=$method --structured \
      --fraction=0 --heads_fraction=$f $EVAL --out_dir="$d" >"$d.txt" 2>"$d.log"
  done
done
# A Fashion-MNIST CNN (conv 32-64, fc 128: the teacher of the assistant
# benchmark): channels and units (structured, both convolutions and fc) and
# unstructured sparsity.
if [ ! -f "$CNN" ]; then
  echo "[compact] training the Fashion-MNIST CNN" >&2
  $RETORT train --arch=cnn --hidden=32,64,128 --dropout=0.5 --epochs=10 --lr=1e-3 --seed=1 \
    --threads="$THREADS" --overwrite --out_dir="$OUT/cnn" 2>"$OUT/cnn.log"
fi
for method in magnitude activation; do
  for f in 0.25 0.5 0.75; do
    d=$OUT/prune/cnn-$method-channels$f
    [ -f "$d/prune.json" ] || $RETORT prune --checkpoint="$CNN" --method=$method --structured \
      --fraction=$f --multiple_of=4 --threads="$THREADS" --out_dir="$d" >"$d.txt" 2>"$d.log"
  done
  for s in 0.25 0.5 0.75; do
    d=$OUT/prune/cnn-$method-s$s
    [ -f "$d/prune.json" ] || $RETORT prune --checkpoint="$CNN" --method=$method --sparsity=$s \
      --threads="$THREADS" --out_dir="$d" >"$d.txt" 2>"$d.log"
  done
done
# SliceGPT on the language model, 128 calibration sequences of the training split.
for f in 0.1 0.2 0.25 0.3; do
  d=$OUT/slice/lm-$f
  mkdir -p "$OUT/slice"
  [ -f "$d/slice.json" ] || $RETORT slice --checkpoint="$LM" --fraction=$f --multiple_of=8 \
    --calibration_sequences=128 $EVAL --out_dir="$d" >"$d.txt" 2>"$d.log"
done

# Recovery: a compacted model distilled from the unpruned student for
# RECOVER_STEPS steps with the same trainer (top-64 + tail, T=1, alpha=0.5),
# in its own shape (--init_from without --model). The control,
# "dense-control", is the unpruned student itself given the same steps, so
# what recovery buys is compared at equal training.
RECOVER_STEPS=${RECOVER_STEPS:-100}
recover() {  # NAME CHECKPOINT
  local r=$OUT/recover/$1
  mkdir -p "$OUT/recover"
  [ -f "$r/eval.json" ] && return
  $RETORT lm train --data="$DATA" --init_from="$2" --teacher="$LM" --top_k=64 --temperature=1 \
    --alpha=0.5 --steps="$RECOVER_STEPS" --lr=1e-3 --warmup=0.1 --seed=1 --seq_len=128 \
    --batch_size=16 --threads="$THREADS" --overwrite --out_dir="$r" 2>"$r.log"
  $RETORT eval --checkpoint="$r/model" $EVAL --json_out="$r/eval.json" >/dev/null
}
recover dense-control "$LM"
recover lm-activation-neurons0.5 "$OUT/prune/lm-activation-neurons0.5"
recover lm-activation-heads0.5 "$OUT/prune/lm-activation-heads0.5"
for f in 0.1 0.2 0.25 0.3; do recover "slice-lm-$f" "$OUT/slice/lm-$f"; done
# The CNN with half its channels and units (activation scores), distilled
# from the dense CNN for 3 epochs starting from its pruned weights
# (`distill --init_from`), and the dense CNN given the same 3 epochs.
recover_cnn() {  # NAME CHECKPOINT
  local r=$OUT/recover/$1
  mkdir -p "$OUT/recover"
  [ -f "$r/eval.json" ] && return
  $RETORT distill --init_from="$2" --teacher="$CNN" --epochs=3 --lr=1e-3 --temperature=1 \
    --alpha=0.5 --seed=1 --threads="$THREADS" --overwrite --out_dir="$r" 2>"$r.log"
  $RETORT eval --checkpoint="$r/best.pt" --split=test --threads="$THREADS" \
    --json_out="$r/eval.json" >/dev/null
}
recover_cnn cnn-dense-control "$CNN"
recover_cnn cnn-activation-channels0.5 "$OUT/prune/cnn-activation-channels0.5/model.pt"
/usr/bin/python3 tools/bench/compact_table.py "$OUT"
