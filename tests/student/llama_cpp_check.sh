#!/usr/bin/env bash
# llama.cpp and @huggingface/gguf read the GGUF files `retort export` writes,
# and llama.cpp computes the same next-token distributions as retort:
#
#   llama_cpp_check.sh RETORT NPM_DIR
#
# Trains a small Llama on the project's own docs (SentencePiece, 2 layers),
# writes retort's logits for a prompt (generate --logits_out), exports GGUF
# f32, f16, q8_0 and q4_0, an int8-quantized checkpoint and one with half its
# attention heads pruned (head_dim != d / heads) as f32, then runs
# tests/student/gguf_check.mjs on them. The npm packages (package.json and
# package-lock.json beside this script; node-llama-cpp carries llama.cpp
# prebuilt for linux-x64) are installed into NPM_DIR once. Needs Node.js 20
# or newer and the npm registry; exits 77 (CTest: skipped) without Node.js.
set -euo pipefail
RETORT=$1
NPM_DIR=$2
SRC=$(cd "$(dirname "$0")" && pwd)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: Node.js and npm are not installed" >&2
  exit 77
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "SKIP: node-llama-cpp needs Node.js 20 or newer, this is $(node --version)" >&2
  exit 77
fi
mkdir -p "$NPM_DIR"
if ! cmp -s "$SRC/npm/package-lock.json" "$NPM_DIR/package-lock.json" || [ ! -d "$NPM_DIR/node_modules" ]; then
  cp "$SRC/npm/package.json" "$SRC/npm/package-lock.json" "$NPM_DIR/"
  (cd "$NPM_DIR" && npm install --omit=optional --ignore-scripts --no-audit --no-fund)
fi
cp "$SRC/gguf_check.mjs" "$NPM_DIR/"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat "$SRC"/../../docs/*.md "$SRC"/../../README.md > "$WORK/text.txt"
if ! "$RETORT" data prepare --text="$WORK/text.txt" --out_dir="$WORK/data" --vocab_size=512 \
    >/dev/null 2>"$WORK/prepare.err"; then
  # A sanitizer build cannot load SentencePiece (see data/tokenizer.h).
  if grep -q "SentencePiece is not available\|has no SentencePiece" "$WORK/prepare.err"; then
    echo "SKIP: this build has no SentencePiece: $(cat "$WORK/prepare.err")" >&2
    exit 77
  fi
  cat "$WORK/prepare.err" >&2
  exit 1
fi
"$RETORT" lm train --data="$WORK/data" --model=d=64,layers=2,heads=4,kv_heads=2,ffn=192 \
  --steps=60 --seq_len=64 --batch_size=8 --lr=3e-3 --threads=2 --out_dir="$WORK/run" 2>/dev/null
MODEL=$WORK/run/model
PROMPT="The teacher server streams temperature-softened logits to the student trainers"
"$RETORT" generate --checkpoint="$MODEL" --prompt="$PROMPT" --max_new_tokens=1 \
  --logits_out="$WORK/reference.json" >/dev/null
for t in f32 f16 q8_0 q4_0; do
  "$RETORT" export --checkpoint="$MODEL" --format=gguf --gguf_type=$t --out="$WORK/model-$t.gguf"
done
"$RETORT" quantize --checkpoint="$MODEL" --quantize=int8 --out_dir="$WORK/int8" --bench_tokens=512 >/dev/null
"$RETORT" generate --checkpoint="$WORK/int8" --prompt="$PROMPT" --max_new_tokens=1 \
  --logits_out="$WORK/reference-int8.json" >/dev/null
"$RETORT" export --checkpoint="$WORK/int8" --format=gguf --gguf_type=f32 --out="$WORK/int8.gguf"
# Half the attention heads pruned (one key/value group of two left): the
# heads keep their width 16 while d=64, so llama.cpp must read the head
# width from llama.attention.key_length.
"$RETORT" prune --checkpoint="$MODEL" --structured --fraction=0 --heads_fraction=0.5 \
  --data="$WORK/data" --seq_len=64 --eval_sequences=8 --bench_tokens=512 \
  --out_dir="$WORK/heads" >/dev/null
"$RETORT" generate --checkpoint="$WORK/heads" --prompt="$PROMPT" --max_new_tokens=1 \
  --logits_out="$WORK/reference-heads.json" >/dev/null
"$RETORT" export --checkpoint="$WORK/heads" --format=gguf --gguf_type=f32 --out="$WORK/heads.gguf"

cd "$NPM_DIR"
# Mean KL(retort || llama.cpp) bounds per type, about 100x what was measured
# here (docs/compaction.md): float32 and float16 differ
# only by summation order and rounding; llama.cpp also quantizes the
# activations to 8 bits for q8_0 and q4_0 dot products.
node gguf_check.mjs "$WORK/reference.json" "$WORK/model-f32.gguf:1e-7" "$WORK/model-f16.gguf:1e-6" \
  "$WORK/model-q8_0.gguf:1e-4" "$WORK/model-q4_0.gguf:5e-3"
node gguf_check.mjs "$WORK/reference-int8.json" "$WORK/int8.gguf:1e-7"
node gguf_check.mjs "$WORK/reference-heads.json" "$WORK/heads.gguf:1e-7"
