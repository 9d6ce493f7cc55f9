// The put/get throughput benchmark behind `kvtier bench`: kvtier and Redis (the default remote KV
// backend of LMCache) store the same bytes, side by side in one run, on loopback.
//
// For each chunk size and client count ("cell"), every client thread puts its share of a fixed working
// set of fresh keys, then gets them back (several passes), timing each call. Verified, then deleted.
// Targets (BenchRow.target):
//   "kvtier"      gRPC only (ClientOptions.local_path = kOff), namespace "kvtier-bench".
//   "kvtier-shm"  the same-host shared-memory path (local_path = kRequire), namespace "kvtier-bench-shm",
//                 which the in-process server keeps in its own arena; after each cell the clients'
//                 local_stats() must show that every get and put went through shared memory (else the bench
//                 fails). With an external --server the rows are skipped (with a note) unless it offers the
//                 path for that namespace.
//   "redis"       a real `redis-server` started by the benchmark on a free loopback port with persistence
//                 off; one hiredis connection per client.
//   "memcpy"      op "get", 1 client, one row per chunk size: one thread memcpy's chunk-sized blocks, in
//                 order, from a touched source of working-set size into one touched buffer (as many copies
//                 as one get pass), the fastest of three passes: the single-core copy ceiling for a get.
// Then "lookup" rows (target "kvtier", op "lookup") for each client count: 16 chains of 64 keys (4 KiB
// chunks, one token of one layer, namespace "kvtier-bench-lookup") are put, and clients call Lookup on whole
// chains (all hits) `lookups` times in total. keys_per_s = keys looked up per wall second;
// keys_per_s_per_core = keys per second of server CPU = the process's CPU time over the timed region minus
// the client threads' own CPU time (only with the in-process server; 0 with --server). With the in-process
// server, CPU the gRPC client library spends outside the calling threads counts as server CPU.
// kvtier is a server given by address, or one started in-process (with the shared-memory path on a Unix
// socket in a fresh temp directory). All buffers are allocated and touched before timing.
// Not thread-safe; call from one thread. The soak mode is in soak.h.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier::bench {

struct BenchOptions {
  std::string server;                                          // kvtier host:port; empty = start one in-process
  std::vector<uint64_t> chunk_bytes = {256ull << 10, 2ull << 20};
  std::vector<int> clients = {1, 4};
  uint64_t working_set_bytes = 512ull << 20;                   // bytes put per cell (distinct keys)
  int get_passes = 2;                                          // times each key is read back per cell
  std::string redis_server = "redis-server";                   // binary; empty = skip the Redis peer
  int lookups = 20000;                                         // Lookup calls per client count; 0 = no lookup rows
  int soak_seconds = 0;                                        // > 0: RunSoak instead of the cells (soak.h)
  int soak_clients = 0;                                        // soak threads; 0 = the largest of `clients`
  Status Validate() const;
};

struct BenchRow {
  std::string target;  // "kvtier", "kvtier-shm", "redis" or "memcpy"
  std::string op;      // "put", "get" or "lookup"
  uint64_t chunk_bytes = 0;
  int clients = 0;
  uint64_t ops = 0;    // calls (copies for memcpy)
  double seconds = 0;
  double gbps = 0;     // payload bytes / wall time, 1e9 bytes per second (0 for lookups)
  double p50_us = 0;   // per call
  double p99_us = 0;
  // Lookup rows only.
  uint64_t keys_per_call = 0;
  double keys_per_s = 0;
  double keys_per_s_per_core = 0;  // 0 = not measured (external server)
};

// Runs every cell, then the lookup rows; prints one progress line per cell to `progress`.
Result<std::vector<BenchRow>> RunThroughputBench(const BenchOptions& options, std::ostream& progress);

// Side-by-side table: one line per (op, chunk size, clients) with kvtier, kvtier-shm, Redis and memcpy
// (gets only) and their ratios; then the lookup rows in their own table.
void PrintTable(const std::vector<BenchRow>& rows, std::ostream& out);
// {"bench":"throughput","results":[{"target":..,"op":..,"chunk_bytes":..,"clients":..,"ops":..,"seconds":..,
//    "gbps":..,"p50_us":..,"p99_us":..}, ...   (lookup rows: "keys_per_call","keys_per_s" and, when measured,
//    "keys_per_s_per_core" instead of "gbps")],
//  "ratios":[{"op":..,"chunk_bytes":..,"clients":..,"gbps_ratio":..,"p99_ratio":..,"shm_gbps_ratio":..,
//    "shm_memcpy_ratio":..}, ...]}   (each ratio only where both rows exist: gbps/p99 kvtier / redis,
//    shm_gbps kvtier-shm / redis, shm_memcpy kvtier-shm / memcpy for gets)
std::string ToJsonLine(const std::vector<BenchRow>& rows);

}  // namespace kvtier::bench
