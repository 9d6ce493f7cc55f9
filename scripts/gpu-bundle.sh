#!/usr/bin/env bash
# Packs kvtier's GPU checks to run on a GPU machine that has the CUDA driver but none of kvtier's libraries
# and no package archive (an offline GPU box): builds the CUDA binaries here, then copies them, stripped, with
# every shared library they load except the C library itself, and a runner (scripts/gpu-bundle-run.sh).
#   scripts/gpu-bundle.sh [BUNDLE_DIR]        (default: .gpu-bundle, ignored by git)
#   env: BUILD (build directory, default build-gpu), JOBS (default: nproc)
# Also writes BUNDLE_DIR.tar.gz (the same, compressed). On the GPU machine, in a copy of the repository:
#   tar -xzf .gpu-bundle.tar.gz && .gpu-bundle/run.sh [OUT_DIR]
#   (scripts/gpu-bundle-run.sh says what run.sh does and takes: FILTER, TESTS, SANITIZE, SKIP_BENCH, BENCH_ARGS)
# Where the GPU machine can install kvtier's dependencies itself, scripts/gpu-check.sh is simpler.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-.gpu-bundle}"
build="${BUILD:-build-gpu}"
jobs="${JOBS:-$(nproc)}"
binaries=(kvstore/kvtier tests/gpu/gpu_kernel_tests tests/kvstore/gpu_tier_cuda_tests tests/paged_transfer_gpu_tests)

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTIER_WITH_CUDA=ON
fi
grep -q '^KVTIER_WITH_CUDA:STRING=ON' "$build/CMakeCache.txt" ||
  grep -q '^KVTIER_WITH_CUDA:STRING=AUTO' "$build/CMakeCache.txt" || {
  echo "gpu-bundle: $build is not a CUDA build (KVTIER_WITH_CUDA); pick another BUILD" >&2
  exit 1
}
targets=()
for b in "${binaries[@]}"; do targets+=("$(basename "$b")"); done
echo "gpu-bundle: building ${targets[*]} in $build with $jobs jobs"
cmake --build "$build" -j "$jobs" --target "${targets[@]}"
for b in "${binaries[@]}"; do
  [[ -x "$build/$b" ]] || { echo "gpu-bundle: $build/$b was not built (is CUDA on in $build?)" >&2; exit 1; }
done

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
for b in "${binaries[@]}"; do
  strip --strip-debug -o "$bundle/bin/$(basename "$b")" "$build/$b"
done

# The libraries each binary loads, by soname, copied from where this machine resolves them. The C library's
# own parts stay behind: they must match the GPU machine's loader. The C++ runtime goes to lib/cxx, which the
# runner uses only when the machine's own is older than the binaries need (ours may need a newer glibc than
# the binaries do). libcuda comes from the GPU machine's driver and libnccl from its toolkit: the binaries
# load both at run time and link neither.
glibc='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libresolv|libutil)\.so'
cxx='^(libstdc\+\+|libgcc_s)\.so'
mkdir -p "$bundle/lib/cxx"
ldd "$bundle"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r soname path; do
    [[ "$soname" =~ $glibc ]] && continue
    if [[ "$soname" =~ $cxx ]]; then cp -L "$path" "$bundle/lib/cxx/$soname"; else cp -L "$path" "$bundle/lib/$soname"; fi
  done
strip --strip-debug "$bundle"/lib/*.so* "$bundle"/lib/cxx/*.so*
if ldd "$bundle"/bin/* | grep -q "not found"; then
  ldd "$bundle"/bin/* | grep "not found" >&2
  echo "gpu-bundle: a library is missing here; build again" >&2
  exit 1
fi
newest_glibc() { objdump -T "$@" 2>/dev/null | grep -o 'GLIBC_2\.[0-9]*' | sort -t. -k2 -n -u | tail -1 | cut -d_ -f2; }

cp scripts/gpu-bundle-run.sh "$bundle/run.sh"
chmod +x "$bundle/run.sh"
{
  echo "built: $(date -u +%Y-%m-%dT%H:%MZ) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with local changes)')"
  echo "build: $build ($(grep '^CMAKE_BUILD_TYPE:' "$build/CMakeCache.txt" | cut -d= -f2)), GPU code for" \
    "$(grep -o 'code=\[compute_[0-9]*,sm_[0-9]*\]' "$build/build.ninja" | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')"
  echo "needs: x86-64 Linux with glibc >= $(newest_glibc "$bundle"/bin/* "$bundle"/lib/*.so*)" \
    "($(newest_glibc "$bundle"/lib/cxx/*) where the bundle's C++ runtime is used), an NVIDIA driver for CUDA $(/usr/local/cuda/bin/nvcc --version | grep -o 'release [0-9.]*' | cut -d' ' -f2)"
} > "$bundle/BUILT"
cat "$bundle/BUILT"
# One compressed file to carry to the GPU machine (gzip: every machine can unpack it).
tar -czf "$bundle.tar.gz" "$bundle"
echo "gpu-bundle: $(du -sh "$bundle" | cut -f1) in $bundle ($(find "$bundle/lib" -name '*.so*' | wc -l) libraries)," \
  "$(du -sh "$bundle.tar.gz" | cut -f1) in $bundle.tar.gz"
