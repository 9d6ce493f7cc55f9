#!/usr/bin/env bash
# The kvtier binary as an operator uses it: `kvtier serve` on OS-chosen ports, `kvtier put`/`get`
# round trip compared with cmp, a miss, `kvtier stat`, a /metrics scrape with curl, the README's client
# example, a lossless-encoded put, shared profiles (`kvtier profile build/show/put/get`), config errors,
# a clean SIGTERM shutdown, and a warm restart with the NVMe tier.
# usage: cli_end_to_end.sh KVTIER_BINARY CLIENT_EXAMPLE_BINARY
set -euo pipefail
KVTIER=$1
EXAMPLE=$2
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$WORK/serve.err" ] && tail -20 "$WORK/serve.err" >&2; exit 1; }

"$KVTIER" serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --host-capacity 64MiB \
  >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 1 300); do
  grep -q "kvtier serving gRPC on" "$WORK/serve.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited at start"
  sleep 0.1
done
LINE=$(cat "$WORK/serve.out")
ADDR=$(sed -n 's/^kvtier serving gRPC on \([^,]*\),.*/\1/p' <<<"$LINE")
METRICS=$(sed -n 's/.*metrics on \(http[^ ]*\)$/\1/p' <<<"$LINE")
[ -n "$ADDR" ] && [ -n "$METRICS" ] || fail "could not read addresses from: $LINE"
grep -q "effective config" "$WORK/serve.err" || fail "effective config not logged"

# put then get round-trips a file byte-exact, by name and by hex key
head -c 3000001 /dev/urandom >"$WORK/in.bin"
"$KVTIER" put --server "$ADDR" --key my-file --in "$WORK/in.bin" | grep -q "^stored: " || fail "put"
"$KVTIER" get --server "$ADDR" --key my-file --out "$WORK/out.bin" | grep -q "^fetched: " || fail "get"
cmp "$WORK/in.bin" "$WORK/out.bin" || fail "round trip differs"
"$KVTIER" put --server "$ADDR" --key my-file --in "$WORK/in.bin" | grep -q "^already present: " || fail "re-put"
: >"$WORK/empty.bin"
"$KVTIER" put --server "$ADDR" --key 000102030405060708090a0b0c0d0e0f --in "$WORK/empty.bin" >/dev/null || fail "put empty"
"$KVTIER" get --server "$ADDR" --key 000102030405060708090a0b0c0d0e0f --out "$WORK/empty.out" >/dev/null || fail "get empty"
cmp "$WORK/empty.bin" "$WORK/empty.out" || fail "empty round trip differs"

# a miss exits 3 and writes nothing
set +e
"$KVTIER" get --server "$ADDR" --key not-there --out "$WORK/miss.bin" 2>"$WORK/miss.err"
RC=$?
set -e
[ "$RC" -eq 3 ] || fail "miss exit code $RC"
[ ! -e "$WORK/miss.bin" ] || fail "miss wrote a file"
grep -q "miss" "$WORK/miss.err" || fail "miss message"

# stat and metrics
"$KVTIER" stat --server "$ADDR" >"$WORK/stat.out" || fail "stat"
grep -q "^host " "$WORK/stat.out" || fail "stat has no host tier line"
curl -sf "$METRICS" >"$WORK/metrics.txt" || fail "scrape"
for series in kvtier_requests_total kvtier_request_duration_seconds_bucket kvtier_tier_bytes kvtier_tier_chunks \
              kvtier_tier_capacity_bytes kvtier_hits_total kvtier_misses_total kvtier_evictions_total \
              kvtier_checksum_failures_total; do
  grep -q "^$series" "$WORK/metrics.txt" || fail "metric $series missing"
done
grep -q '^kvtier_requests_total{code="OK",op="put"} 3' "$WORK/metrics.txt" || fail "put counter"

# a lossless-encoded put comes back byte-exact; lossy codecs are refused for files
seq 1 200000 >"$WORK/text.txt"
"$KVTIER" put --server "$ADDR" --key text --in "$WORK/text.txt" --codec lossless | grep -q "codec lossless" ||
  fail "lossless put"
"$KVTIER" get --server "$ADDR" --key text --out "$WORK/text.out" >/dev/null || fail "lossless get"
cmp "$WORK/text.txt" "$WORK/text.out" || fail "lossless round trip differs"
if "$KVTIER" put --server "$ADDR" --key text2 --in "$WORK/text.txt" --codec int8 2>"$WORK/lossy.err"; then
  fail "lossy codec accepted for a file"
fi
grep -q "lossy" "$WORK/lossy.err" || fail "lossy codec message: $(cat "$WORK/lossy.err")"

# shared cachegen profiles: build from sample chunks (fp32, 2 layers x 2 heads x 8 dims, 64 tokens),
# store, fetch back byte-exact; an unknown name exits 3
for s in 1 2; do
  perl -e 'print pack("f<*", map { sin($_ * 0.013 * '"$s"') * (1 + $_ % 5) } 1 .. 4096)' >"$WORK/sample$s.bin"
done
"$KVTIER" profile build --layers 2 --heads 2 --head-dim 8 --dtype fp32 --sample "$WORK/sample1.bin" \
  --sample "$WORK/sample2.bin" --out "$WORK/profile.bin" 2>/dev/null | grep -q "written to" || fail "profile build"
"$KVTIER" profile show --in "$WORK/profile.bin" | grep -q "2 layers, 2 KV heads, head_dim 8" || fail "profile show"
"$KVTIER" profile put --server "$ADDR" --name tables --in "$WORK/profile.bin" | grep -q "stored profile" ||
  fail "profile put"
"$KVTIER" profile get --server "$ADDR" --name tables --out "$WORK/profile.out" >/dev/null || fail "profile get"
cmp "$WORK/profile.bin" "$WORK/profile.out" || fail "profile differs after a round trip"
set +e
"$KVTIER" profile get --server "$ADDR" --name nope --out "$WORK/nope.bin" 2>/dev/null
RC=$?
set -e
[ "$RC" -eq 3 ] || fail "unknown profile exit code $RC"

# the README client example against this server
"$EXAMPLE" "$ADDR" | grep -q "reused 3 of 4 chunks" || fail "client example"

# help is there and accurate; bad input is refused with a clear message
"$KVTIER" serve --help | grep -q -- "--host-capacity" || fail "serve --help"
"$KVTIER" --help | grep -q "bench" || fail "kvtier --help"
printf 'host_tier:\n  capacty: 1GiB\n' >"$WORK/bad.yaml"
if "$KVTIER" serve --config "$WORK/bad.yaml" 2>"$WORK/bad.err"; then fail "bad config accepted"; fi
grep -q "host_tier.capacty" "$WORK/bad.err" || fail "bad config message: $(cat "$WORK/bad.err")"
if "$KVTIER" put --server "$ADDR" 2>/dev/null; then fail "put without --key accepted"; fi
if "$KVTIER" frobnicate 2>/dev/null; then fail "unknown command accepted"; fi

# SIGTERM drains and exits 0
kill -TERM "$SERVER_PID"
for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVER_PID" 2>/dev/null; then fail "server did not stop on SIGTERM"; fi
wait "$SERVER_PID" || fail "server exit code $?"
SERVER_PID=""
# the NVMe tier from the command line: chunks pushed out of a small DRAM tier survive a restart
"$KVTIER" serve --listen 127.0.0.1:0 --metrics-listen "" --host-capacity 8MiB \
  --disk-path "$WORK/nvme" --disk-capacity 256MiB >"$WORK/disk.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
wait_for_address() {
  for _ in $(seq 1 300); do
    grep -q "kvtier serving gRPC on" "$1" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited at start"
    sleep 0.1
  done
  sed -n 's/^kvtier serving gRPC on \([^,]*\).*/\1/p' "$1"
}
ADDR=$(wait_for_address "$WORK/disk.out")
for i in 1 2 3 4 5 6; do
  head -c 2000000 /dev/urandom >"$WORK/d$i.bin"
  "$KVTIER" put --server "$ADDR" --key "disk-$i" --in "$WORK/d$i.bin" >/dev/null || fail "disk put $i"
done
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || fail "disk server exit code"
"$KVTIER" serve --listen 127.0.0.1:0 --metrics-listen "" --host-capacity 8MiB \
  --disk-path "$WORK/nvme" --disk-capacity 256MiB >"$WORK/disk2.out" 2>>"$WORK/serve.err" &
SERVER_PID=$!
ADDR=$(wait_for_address "$WORK/disk2.out")
grep -q "chunks from the index" "$WORK/serve.err" || fail "no warm start logged"
FOUND=0
for i in 1 2 3 4 5 6; do
  if "$KVTIER" get --server "$ADDR" --key "disk-$i" --out "$WORK/d$i.out" >/dev/null 2>&1; then
    cmp "$WORK/d$i.bin" "$WORK/d$i.out" || fail "disk chunk $i differs after restart"
    FOUND=$((FOUND + 1))
  fi
done
# A clean stop writes what was only in DRAM to disk (disk.flush_on_shutdown): all six come back.
[ "$FOUND" -eq 6 ] || fail "only $FOUND of 6 chunks came back after a restart"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || fail "disk server exit code"
SERVER_PID=""

echo "cli end-to-end: all checks passed"
