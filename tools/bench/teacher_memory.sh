#!/usr/bin/env bash
# Peak resident memory and time to SERVING of `retort teacher serve` on a
# randomly initialised checkpoint of a published shape, bf16, in shards:
#
#   tools/bench/teacher_memory.sh RETORT WORK_DIR [SHAPE] [MAX_SHARD_BYTES] [bf16|float32]
#
# Writes the checkpoint with `retort model init` once (kept in WORK_DIR),
# then starts the server with --bf16 (the file's dtype: the weights stay
# views of the mapped shards; `float32` serves a float32 copy instead, for
# comparison), waits for the port file it writes once it
# reports SERVING, and reads the process's VmHWM (peak RSS) and VmRSS from
# /proc. Prints one line per measurement; nothing is downloaded. With
# COLD=1 the shards' pages are first dropped from the page cache
# (posix_fadvise DONTNEED on those files only), so the server reads them
# from disk.
set -euo pipefail
RETORT=$1
WORK=$2
SHAPE=${3:-llama-3.2-1b}
SHARD=${4:-650000000}
MODE=${5:-bf16}
BF16=--bf16
if [ "$MODE" = float32 ]; then BF16=--bf16=false; fi
DIR="$WORK/$SHAPE-bf16"
mkdir -p "$WORK"
if [ ! -f "$DIR/config.json" ]; then
  /usr/bin/time -f "model init: %e s, peak RSS %M KiB" \
    "$RETORT" model init --shape="$SHAPE" --weights_dtype=bfloat16 \
    --max_shard_bytes="$SHARD" --out_dir="$DIR" --threads=2
fi
FILES=$(ls "$DIR"/*.safetensors | wc -l)
BYTES=$(cat "$DIR"/*.safetensors | wc -c)
echo "checkpoint: $DIR, $FILES safetensors files, $BYTES bytes"
sync
if [ "${COLD:-0}" = 1 ]; then
  /usr/bin/python3 -c 'import os, sys
for f in sys.argv[1:]:
    fd = os.open(f, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' \
    "$DIR"/*.safetensors
  MODE="$MODE, cold page cache"
fi
PORT_FILE="$WORK/port"
rm -f "$PORT_FILE"
START=$(date +%s.%N)
"$RETORT" teacher serve --checkpoint="$DIR" "$BF16" --listen=127.0.0.1:0 --port_file="$PORT_FILE" \
  --max_batch_rows=8 --threads=2 2> "$WORK/serve.log" &
PID=$!
while [ ! -s "$PORT_FILE" ]; do
  if ! kill -0 "$PID" 2>/dev/null; then cat "$WORK/serve.log"; exit 1; fi
  sleep 0.05
done
END=$(date +%s.%N)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
RSS=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
kill -TERM "$PID"
wait "$PID" || true
awk -v s="$START" -v e="$END" -v h="$HWM" -v r="$RSS" -v b="$BYTES" 'BEGIN {
  printf "'"$MODE"': time to SERVING %.1f s; peak RSS %.0f MiB (%.2fx the %.0f MiB of weights); RSS when serving %.0f MiB\n",
         e - s, h / 1024, h * 1024 / b, b / 1048576, r / 1024 }'
