#!/usr/bin/env bash
# Runs kvtier's GPU checks from a bundle made by scripts/gpu-bundle.sh (copied into the bundle as run.sh):
# the three `gpu`-label test binaries (kernels against their twins, the CUDA GPU tier, paged transfers
# through a real server process with CUDA IPC and NCCL), `kvtier bench-gpu --json`, on request the kernel
# tests under compute-sanitizer, and last the NCCL timeout test (an abort of a connect in progress, which some
# NCCL versions hang on: it gets its own short limit).
#   run.sh [OUT_DIR]          (default: $OUT, else ./gpu-bundle-out)
#   env: BUDGET      seconds for the whole run (default 480); each step gets what is left, and steps that
#                    would start with under 20 s left are skipped and said so
#        FILTER      gtest filter for every test binary (default: all tests, the NCCL timeout test last)
#        TESTS       which test binaries, space-separated (default: all three)
#        SKIP_BENCH=1  no benchmark
#        BENCH_ARGS  extra arguments for bench-gpu (see `kvtier bench-gpu --help`)
#        SANITIZE=1  then gpu_kernel_tests under compute-sanitizer memcheck (slow; runs last)
# Writes at most seven files to OUT_DIR: summary.txt (the bundle, the machine, each step's verdict with its
# failed and skipped tests), one log per test binary, bench-gpu.txt (table + JSON line), memcheck.log and
# nccl-timeout.log. Exit status 0 only when every step ran and succeeded; on a machine where nvidia-smi sees a
# GPU, a test skipped for want of one (an old driver, say) is a failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-${OUT:-gpu-bundle-out}}"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
deadline=$((SECONDS + ${BUDGET:-480}))
status=0
say() { echo "$@" | tee -a "$summary"; }

say "== bundle"; tee -a "$summary" < "$here/BUILT"
say "== machine: $(uname -srm), $(ldd --version 2>&1 | head -1)"
gpus="$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_mode,pci.bus_id --format=csv,noheader 2>&1)" ||
  gpus=""
say "${gpus:-nvidia-smi: no GPU listed}"
driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
if [[ -n "$driver" && "${driver%%.*}" -lt 580 ]]; then
  say "== driver $driver is older than the CUDA 13 runtime the binaries carry needs (580): expect no GPU"
fi

# libnccl.so.2 is loaded at run time: the first one found on the usual paths, pip's wheel included.
nccl_dir=""
for candidate in $(ldconfig -p 2>/dev/null | awk '/libnccl\.so\.2 /{print $NF}') \
                 /usr/local/cuda/lib64/libnccl.so.2 /usr/lib/x86_64-linux-gnu/libnccl.so.2 \
                 $(python3 -c 'import nvidia.nccl, os; [print(os.path.join(p, "lib", "libnccl.so.2")) for p in nvidia.nccl.__path__]' 2>/dev/null) \
                 $(find /opt /usr/local -name libnccl.so.2 2>/dev/null | head -3); do
  if [[ -f "$candidate" ]]; then nccl_dir="$(dirname "$candidate")"; break; fi
done
say "== NCCL: ${nccl_dir:-none found (the NCCL tests will skip and say so)}"

# The machine's own search path stays last: it may be how the driver's libcuda is found.
base_path="${LD_LIBRARY_PATH:-}"
use_path() { export LD_LIBRARY_PATH="$1${nccl_dir:+:$nccl_dir}${base_path:+:$base_path}"; }
use_path "$here/lib"
if ldd "$here"/bin/* 2>&1 | grep -q "not found"; then
  use_path "$here/lib:$here/lib/cxx"  # this machine's C++ runtime is older than the binaries need
  say "== C++ runtime: the bundle's (the machine's is missing or too old)"
fi
export KVTIER_BINARY="$here/bin/kvtier"  # the server process the transfer tests start
if ldd "$here"/bin/* 2>&1 | grep "not found" | sort -u | tee -a "$summary" | grep -q .; then
  say "gpu-bundle-run: libraries missing on this machine (above); the bundle cannot run here"
  exit 2
fi

# Sets `left` to the seconds left for the next step (at most $2 when given); false (the step reported as not
# run) under 20.
has_time() {
  left=$((deadline - SECONDS))
  if (( left < 20 )); then say "== $1: not run, the budget is spent"; status=1; return 1; fi
  if [[ -n "${2:-}" ]] && (( left > $2 )); then left=$2; fi
}
tests_named() {  # tag (OK, SKIPPED, FAILED), log: the distinct test names gtest marked with it
  grep -E "^\[ *$1 *\] [A-Za-z_][A-Za-z0-9_/]*\.[A-Za-z0-9_/]+" "$2" | sed -E 's/^\[[^]]*\] ([^ ,]+).*/\1/' | sort -u
}
run_tests() {  # binary, name of the step and its log, gtest filter, time cap (or ""), [wrapper command...]
  local bin="$1" name="$2" filter="$3" cap="$4"; shift 4
  local log="$out/$name.log" start=$SECONDS
  has_time "$name" "$cap" || return 0
  timeout --kill-after=5 "$left" "$@" "$here/bin/$bin" --gtest_filter="$filter" --gtest_color=no > "$log" 2>&1
  local rc=$?
  say "== $name: exit $rc$( ((rc == 124)) && echo ' (out of time)'), $(tests_named OK "$log" | wc -l) passed," \
      "$(tests_named SKIPPED "$log" | wc -l) skipped, $(tests_named FAILED "$log" | wc -l) failed, $((SECONDS - start)) s"
  for tag in FAILED SKIPPED; do tests_named "$tag" "$log" | sed "s/^/  $tag /" | head -25 | tee -a "$summary"; done
  if grep -q 'no GPU: ' "$log"; then
    grep -m 1 -o 'no GPU: .*' "$log" | sed 's/^/  first skip: /' | tee -a "$summary"
    [[ -z "$gpus" ]] || { say "  FAILED: tests skipped for want of a GPU on a machine that has one"; rc=1; }
  fi
  (( rc == 0 )) || status=1
}

nccl_timeout_test=NcclKernelTest.AMissingPeerTimesOut
for t in ${TESTS:-gpu_kernel_tests gpu_tier_cuda_tests paged_transfer_gpu_tests}; do
  filter="${FILTER:-*}"
  [[ -n "${FILTER:-}" || "$t" != gpu_kernel_tests ]] || filter="-$nccl_timeout_test"
  run_tests "$t" "$t" "$filter" ""
done
if [[ "${SKIP_BENCH:-0}" != 1 ]] && has_time bench-gpu; then
  start=$SECONDS
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
  timeout --kill-after=5 "$left" "$here/bin/kvtier" bench-gpu --json ${BENCH_ARGS:-} > "$out/bench-gpu.txt" 2>&1
  rc=$?
  say "== bench-gpu: exit $rc, $((SECONDS - start)) s"
  (( rc == 0 )) || { status=1; tail -5 "$out/bench-gpu.txt" | tee -a "$summary"; }
fi
if [[ "${SANITIZE:-0}" == 1 ]]; then
  sanitizer="$(command -v compute-sanitizer ||
    find /usr/local -maxdepth 3 -path "*/cuda*/bin/compute-sanitizer" 2> /dev/null | head -1)"
  if [[ -n "$sanitizer" ]]; then
    run_tests gpu_kernel_tests memcheck "${FILTER:--$nccl_timeout_test}" "" "$sanitizer" --tool memcheck \
      --error-exitcode 1
    grep -m 10 'ERROR SUMMARY\|Invalid\|out of bounds' "$out/memcheck.log" | tee -a "$summary"
  else
    say "== memcheck: no compute-sanitizer (PATH, /usr/local/cuda*/bin), not run"
    status=1
  fi
fi
if [[ -z "${FILTER:-}" && " ${TESTS:-gpu_kernel_tests} " == *" gpu_kernel_tests "* ]]; then
  run_tests gpu_kernel_tests nccl-timeout "$nccl_timeout_test" 90
fi
say "== verdict: $([[ $status == 0 ]] && echo pass || echo FAIL)"
exit $status
