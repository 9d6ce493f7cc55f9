#!/usr/bin/env bash
# Builds the codec fuzzers (clang, libFuzzer + ASan + UBSan) into BUILD_DIR, writes seed corpora and
# runs every fuzzer for SECONDS. Fails when any fuzzer crashes, leaks or times out; the input that did
# it is left as BUILD_DIR/crash-<fuzzer>-*. Corpora grow across runs in BUILD_DIR/corpus.
#   usage: tests/fuzz/run_fuzzers.sh BUILD_DIR [SECONDS]   (default 20)
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [SECONDS]" >&2
  exit 2
fi
BUILD=$(mkdir -p "$1" && cd "$1" && pwd)
SECONDS_EACH=${2:-20}
SRC=$(cd "$(dirname "$0")" && pwd)
CXX_FUZZ=${CXX_FUZZ:-clang++}

cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER="$CXX_FUZZ" >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j2

rm -rf "$BUILD/seeds"
"$BUILD/fuzz_seeds" "$BUILD/seeds"

FUZZERS=(fuzz_inspect fuzz_decode fuzz_profile)
for codec in raw lossless int8 cachegen kivi2 mixed; do FUZZERS+=("fuzz_streams_$codec"); done

status=0
for f in "${FUZZERS[@]}"; do
  case "$f" in
    fuzz_profile) seeds="$BUILD/seeds/profile" ;;
    fuzz_streams_*) seeds="$BUILD/seeds/${f#fuzz_streams_}" ;;
    *) seeds="$BUILD/seeds/decode" ;;
  esac
  corpus="$BUILD/corpus/$f"
  mkdir -p "$corpus"
  log="$BUILD/$f.log"
  if "$BUILD/$f" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$BUILD/crash-$f-" "$corpus" "$seeds" >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "$f: ok, $execs executions, $cov"
  else
    echo "$f: FAILED (log $log)"
    tail -n 40 "$log"
    status=1
  fi
done
exit $status
