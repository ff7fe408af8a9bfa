#!/usr/bin/env bash
# Retort's one entry point on a fresh Debian bookworm machine.
#
#   ./run.sh demo [retort demo flags]   install what is missing, build, run the demo
#   ./run.sh test [--sanitize]          install what is missing, build, run the tests
#   ./run.sh fuzz [seconds]             build the libFuzzer targets with clang, fuzz each (60 s)
#   ./run.sh build                      install what is missing and build
#   ./run.sh retort <command> [flags]   build, then run any retort command
#
# Idempotent: packages already installed are not touched and the build is
# incremental (ccache and a shared precompiled torch header).
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libgloo-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgtest-dev libgmock-dev nlohmann-json3-dev zlib1g-dev libssl-dev
  dataset-fashion-mnist
  openssl prometheus yamllint python3-torch slurm-wlm munge
  libsentencepiece-dev sentencepiece bible-kjv fortunes libicu-dev
)

log() { printf '[run.sh] %s\n' "$*" >&2; }

# Only `./run.sh fuzz` needs these.
FUZZ_PACKAGES=(clang libclang-rt-14-dev libfuzzer-14-dev)

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}" "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  log "installing ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

build() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    log "configuring $dir"
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  fi
  cmake --build "$dir" -j "${RETORT_JOBS:-2}"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  demo)
    install_missing
    build build
    exec ./build/retort demo "$@"
    ;;
  test)
    install_missing
    dir=build
    flags=()
    if [ "${1:-}" = "--sanitize" ]; then
      dir=build-asan
      flags=(-DRETORT_SANITIZE=ON)
      # LibTorch is not built with ASan: leaks in its static initialisers are
      # not ours, and its OpenMP pool trips the container-overflow check.
      export ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0
      export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    fi
    build "$dir" "${flags[@]}"
    exec ctest --test-dir "$dir" --output-on-failure -j "${RETORT_JOBS:-2}"
    ;;
  fuzz)
    install_missing "${FUZZ_PACKAGES[@]}"
    seconds=${1:-60}
    if [ ! -f build-fuzz/build.ninja ]; then
      log "configuring build-fuzz (clang, libFuzzer + ASan + UBSan)"
      CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DRETORT_FUZZ=ON >/dev/null
    fi
    cmake --build build-fuzz -j "${RETORT_JOBS:-2}" --target distill_request_fuzzer distill_request_seeds \
      safetensors_fuzzer gguf_fuzzer cache_shard_fuzzer
    mkdir -p build-fuzz/corpus/distill_request build-fuzz/corpus/safetensors build-fuzz/corpus/gguf \
      build-fuzz/corpus/cache_shard
    log "fuzzing request parsing and validation for ${seconds}s"
    build-fuzz/tests/fuzz/distill_request_fuzzer -max_len=16384 -max_total_time="$seconds" \
      -print_final_stats=1 build-fuzz/corpus/distill_request build-fuzz/tests/fuzz/seeds
    log "fuzzing the safetensors header parser for ${seconds}s"
    build-fuzz/tests/fuzz/safetensors_fuzzer -max_len=4096 -max_total_time="$seconds" \
      -print_final_stats=1 build-fuzz/corpus/safetensors tests/fuzz/safetensors_seeds
    log "fuzzing the GGUF parser for ${seconds}s"
    build-fuzz/tests/fuzz/gguf_fuzzer -max_len=8192 -max_total_time="$seconds" \
      -print_final_stats=1 build-fuzz/corpus/gguf tests/fuzz/gguf_seeds
    log "fuzzing the teacher cache's shard reader for ${seconds}s"
    build-fuzz/tests/fuzz/cache_shard_fuzzer -max_len=4096 -max_total_time="$seconds" \
      -print_final_stats=1 build-fuzz/corpus/cache_shard tests/fuzz/cache_shard_seeds
    ;;
  build)
    install_missing
    build build
    ;;
  retort)
    install_missing
    build build
    exec ./build/retort "$@"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || exit 2
    ;;
esac
