#!/usr/bin/env bash
# Installs everything kvtier needs to build, test and benchmark, from Debian's archive only.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
# Needs root (or passwordless sudo). CUDA/NCCL are never installed here: they come with the machine's
# CUDA toolkit when one is present, and the build works without them.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates clang libclang-rt-14-dev
  # RPC and serialization
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # storage, compression, hashing, config
  librocksdb-dev liburing-dev libzstd-dev libxxhash-dev libyaml-cpp-dev
  # metrics
  prometheus-cpp-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # benchmark peer (Redis 7) and its client library; curl for metric scrapes in tests
  redis-server libhiredis-dev curl
  # promtool and a Prometheus server for the metrics tests (tests/integration/prometheus_test.cc)
  prometheus
  # NVMe tier benchmark peer
  fio
  # the reuse evaluation's quality-versus-compute plot (kvtier bench-reuse --plot)
  gnuplot-nox
  # certificates for the TLS tests
  openssl
  # Helm chart check without helm (deploy/tools/check_chart.sh): Go + sprig render it offline, PyYAML and
  # yamllint check the result
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev python3-yaml yamllint
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian enables and starts redis-server and prometheus on install; the benchmark and the tests start
# their own instances on free ports, and a system-wide Prometheus would hold kvtier's default metrics
# port 9090.
for service in redis-server prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    $SUDO systemctl stop "$service" || true
    $SUDO systemctl disable "$service" >/dev/null 2>&1 || true
  fi
done
echo "install-deps: done"
