#!/usr/bin/env bash
# llama.cpp and @huggingface/gguf read the GGUF files `retort export` writes,
# and llama.cpp computes the same next-token distributions as retort:
#
#   llama_cpp_check.sh RETORT NPM_DIR
#
# Trains a small Llama on the project's own docs (SentencePiece, 2 layers),
# writes retort's logits for a prompt (generate --logits_out), exports GGUF
# f32, f16, q8_0 and q4_0, an int8-quantized checkpoint and one with half its
# attention heads pruned (head_dim != d / heads) as f32; then the other
# families: a Qwen2 (q/k/v biases) and a Qwen3 (q/k norms, head_dim 24 in a
# 64-wide model) trained the same way and exported f32 and q8_0 in
# llama.cpp's qwen2 and qwen3 architectures (and the Qwen3 quantized to
# int8, as f32), a Mistral (a sliding window of 48, longer than the prompt)
# exported as llama, and the Llama given Llama 3's rope_scaling in its
# config.json (llama.cpp's rope_freqs); and a Qwen2 and a Llama trained on
# byte-level BPE tokenizer.json files (Qwen2's and Llama 3's
# configurations) that Hugging Face's tokenizers library trains here
# (make_bpe_tokenizer.mjs), exported with llama.cpp's gpt2 vocabulary, whose
# tokenization of the prompt llama.cpp must match; then runs
# tests/student/gguf_check.mjs on them (every check, failing at the end if
# any failed). The npm packages (package.json and package-lock.json beside
# this script; node-llama-cpp carries llama.cpp prebuilt for linux-x64, and
# tokenizers its Rust core) are installed into NPM_DIR once. Needs Node.js
# 20 or newer and the npm registry; exits 77 (CTest: skipped) without
# Node.js.
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
cp "$SRC/gguf_check.mjs" "$SRC/make_bpe_tokenizer.mjs" "$NPM_DIR/"

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

# The other families, trained as the Llama was.
family() {  # NAME MODEL_SUFFIX
  "$RETORT" lm train --data="$WORK/data" --model=d=64,layers=2,heads=4,kv_heads=2,ffn=192,$2 \
    --steps=60 --seq_len=64 --batch_size=8 --lr=3e-3 --threads=2 --out_dir="$WORK/$1-run" 2>/dev/null
  "$RETORT" generate --checkpoint="$WORK/$1-run/model" --prompt="$PROMPT" --max_new_tokens=1 \
    --logits_out="$WORK/reference-$1.json" >/dev/null
}
family qwen2 qwen2
family qwen3 qwen3,head_dim=24
family mistral mistral,window=48
for f in qwen2 qwen3; do
  for t in f32 q8_0; do
    "$RETORT" export --checkpoint="$WORK/$f-run/model" --format=gguf --gguf_type=$t --out="$WORK/$f-$t.gguf"
  done
done
"$RETORT" export --checkpoint="$WORK/mistral-run/model" --format=gguf --gguf_type=f32 \
  --out="$WORK/mistral.gguf"
# An int8-quantized Qwen3: its q/k norms stay float beside the codes.
"$RETORT" quantize --checkpoint="$WORK/qwen3-run/model" --quantize=int8 --out_dir="$WORK/qwen3-int8" \
  --bench_tokens=512 >/dev/null
"$RETORT" generate --checkpoint="$WORK/qwen3-int8" --prompt="$PROMPT" --max_new_tokens=1 \
  --logits_out="$WORK/reference-qwen3-int8.json" >/dev/null
"$RETORT" export --checkpoint="$WORK/qwen3-int8" --format=gguf --gguf_type=f32 \
  --out="$WORK/qwen3-int8.gguf"
# Llama 3's rope scaling: the trained Llama's config.json given rope_scaling
# of type llama3 (an original context of 16, so every band is scaled).
cp -r "$MODEL" "$WORK/llama3"
node -e '
const fs = require("fs"), path = process.argv[1];
const c = JSON.parse(fs.readFileSync(path, "utf8"));
c.rope_scaling = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4,
  original_max_position_embeddings: 16 };
fs.writeFileSync(path, JSON.stringify(c, null, 2));' "$WORK/llama3/config.json"
"$RETORT" generate --checkpoint="$WORK/llama3" --prompt="$PROMPT" --max_new_tokens=1 \
  --logits_out="$WORK/reference-llama3.json" >/dev/null
"$RETORT" export --checkpoint="$WORK/llama3" --format=gguf --gguf_type=f32 --out="$WORK/llama3.gguf"
# Byte-level BPE tokenizer.json files in Qwen2's and Llama 3's configurations,
# a corpus of each, and a Qwen2 and a Llama trained on them: GGUF carries
# them as llama.cpp's gpt2 vocabulary (pre-tokenizers qwen2 and llama-bpe).
bpe() {  # STYLE FAMILY_WORD
  (cd "$NPM_DIR" && node make_bpe_tokenizer.mjs "$WORK/text.txt" "$WORK/bpe-$1.json" "$1")
  "$RETORT" data prepare --text="$WORK/text.txt" --tokenizer="$WORK/bpe-$1.json" \
    --out_dir="$WORK/bpe-$1-data" >/dev/null
  "$RETORT" lm train --data="$WORK/bpe-$1-data" --model=d=64,layers=2,heads=4,kv_heads=2,ffn=192,$2 \
    --steps=30 --seq_len=64 --batch_size=8 --lr=3e-3 --threads=2 --out_dir="$WORK/bpe-$1-run" 2>/dev/null
  "$RETORT" generate --checkpoint="$WORK/bpe-$1-run/model" --prompt="$PROMPT" --max_new_tokens=1 \
    --logits_out="$WORK/reference-bpe-$1.json" >/dev/null
  "$RETORT" export --checkpoint="$WORK/bpe-$1-run/model" --format=gguf --gguf_type=f32 \
    --out="$WORK/bpe-$1.gguf"
}
bpe qwen2 qwen2
bpe llama3 llama

cd "$NPM_DIR"
# Mean KL(retort || llama.cpp) bounds per type, about 100x what was measured
# here (docs/compaction.md): float32 and float16 differ
# only by summation order and rounding; llama.cpp also quantizes the
# activations to 8 bits for q8_0 and q4_0 dot products.
# Every check runs; the script fails at the end if any did.
status=0
check() { node "$@" || status=1; }
check gguf_check.mjs "$WORK/reference.json" "$WORK/model-f32.gguf:1e-7" "$WORK/model-f16.gguf:1e-6" \
  "$WORK/model-q8_0.gguf:1e-4" "$WORK/model-q4_0.gguf:5e-3"
check gguf_check.mjs "$WORK/reference-int8.json" "$WORK/int8.gguf:1e-7"
check gguf_check.mjs "$WORK/reference-heads.json" "$WORK/heads.gguf:1e-7"
check gguf_check.mjs "$WORK/reference-qwen2.json" "$WORK/qwen2-f32.gguf:1e-7:qwen2" \
  "$WORK/qwen2-q8_0.gguf:1e-4:qwen2"
check gguf_check.mjs "$WORK/reference-qwen3.json" "$WORK/qwen3-f32.gguf:1e-7:qwen3" \
  "$WORK/qwen3-q8_0.gguf:1e-4:qwen3"
check gguf_check.mjs "$WORK/reference-qwen3-int8.json" "$WORK/qwen3-int8.gguf:1e-7:qwen3"
check gguf_check.mjs "$WORK/reference-mistral.json" "$WORK/mistral.gguf:1e-7"
check gguf_check.mjs "$WORK/reference-llama3.json" "$WORK/llama3.gguf:1e-7"
GGUF_CHECK_TEXT="$PROMPT" check gguf_check.mjs "$WORK/reference-bpe-qwen2.json" \
  "$WORK/bpe-qwen2.gguf:1e-7:qwen2"
GGUF_CHECK_TEXT="$PROMPT" check gguf_check.mjs "$WORK/reference-bpe-llama3.json" \
  "$WORK/bpe-llama3.gguf:1e-7"
exit $status
