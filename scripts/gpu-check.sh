#!/usr/bin/env bash
# Builds kvtier with CUDA and runs everything that needs a GPU: the CTest label `gpu` (kernels against their
# CPU twins, paged transfers against the twin through a real server, NCCL) and `kvtier bench-gpu --json`.
# For a machine with an NVIDIA GPU and the CUDA toolkit; deps come from scripts/install-deps.sh as usual.
#   scripts/gpu-check.sh [OUT_DIR]     (default: ./gpu-check-out) — logs and the benchmark's output land there
set -euo pipefail
out="${1:-${OUT:-gpu-check-out}}"
mkdir -p "$out"
build="${BUILD:-build-gpu}"
jobs="${JOBS:-$(nproc)}"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "gpu-check: nvidia-smi failed (see $out/nvidia-smi.txt)"
# A GPU box may have no network: a failed install is reported, and the build says what is really missing.
./scripts/install-deps.sh > "$out/deps.log" 2>&1 || echo "gpu-check: install-deps failed (offline?), building with what is installed"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTIER_WITH_CUDA=ON > "$out/configure.log" 2>&1
echo "gpu-check: building in $build with $jobs jobs"
cmake --build "$build" -j "$jobs" > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
echo "gpu-check: ctest -L gpu"
status=0
ctest --test-dir "$build" -L gpu --output-on-failure --timeout 600 > "$out/ctest-gpu.log" 2>&1 || status=1
tail -30 "$out/ctest-gpu.log"
echo "gpu-check: kvtier bench-gpu --json"
"./$build/kvstore/kvtier" bench-gpu --json > "$out/bench-gpu.txt" 2> "$out/bench-gpu.progress" || status=1
cat "$out/bench-gpu.txt"
exit $status
