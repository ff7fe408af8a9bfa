#!/usr/bin/env bash
# Builds Retort against PyTorch's own LibTorch 2.x (CUDA wheel) and runs the
# test suite on it. Meant for a machine with a GPU and PyTorch 2.x but no
# Debian packages: the Debian bookworm packages of gRPC, protobuf, abseil,
# GoogleTest, nlohmann-json, OpenSSL and zlib headers travel as .deb files in
# .debs/ (made on a Debian machine with
#   apt-get download libgrpc++-dev libgrpc-dev libgrpc++1.51 libgrpc29 \
#     libprotobuf-dev libprotobuf32 libprotoc32 protobuf-compiler \
#     protobuf-compiler-grpc libabsl-dev libabsl20220623 libre2-9 libre2-dev \
#     libc-ares2 libc-ares-dev nlohmann-json3-dev libgtest-dev libgmock-dev \
#     googletest libupb-dev libssl-dev zlib1g-dev)
# and are unpacked into / (the machine is throw-away).
#
#   tools/device/libtorch2_check.sh OUT_DIR
set -uo pipefail
out=${1:?usage: libtorch2_check.sh OUT_DIR}
mkdir -p "$out"
for f in .debs/*.deb; do dpkg -x "$f" /; done
ldconfig
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' | tee "$out/env.txt"
g++ --version | head -1 | tee -a "$out/env.txt"
cmake --version | head -1 | tee -a "$out/env.txt"
torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_inc=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include"))')
{
  grep -n "explicit Reducer" -A14 "$torch_inc/torch/csrc/distributed/c10d/reducer.hpp"
  grep -n "class TORCH_API ProcessGroupGloo" "$torch_inc/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp"
  grep -n "  explicit ProcessGroup(\|  ProcessGroup(\|setDefaultBackend\|void setBackend" -A3 "$torch_inc/torch/csrc/distributed/c10d/ProcessGroup.hpp"
  ls "$torch_inc" | head -30
} >"$out/headers.txt" 2>&1
build=/tmp/retort-libtorch2
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_cmake" \
  >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
time cmake --build "$build" -j 16 -- -k 0 >"$out/build.log" 2>&1
status=$?
grep -E "error|FAILED" "$out/build.log" | head -40
[ $status -eq 0 ] || exit 1
# The launcher tests need Debian's python3-torch (torchrun 1.13); the rest runs.
ctest --test-dir "$build" -j 16 --timeout 300 -E "DataParallel|deploy_manifests|slurm" \
  >"$out/ctest.log" 2>&1
status=$?
tail -15 "$out/ctest.log"
exit $status
