// The put/get throughput benchmark behind `kvtier bench`: kvtier and Redis (the default remote KV
// backend of LMCache) store the same bytes, side by side in one run, on loopback.
//
// For each chunk size and client count, every client thread puts its share of a fixed working set of
// fresh keys, then gets them back (several passes), timing each call. Redis is a real
// `redis-server` started by the benchmark on a free loopback port with persistence off; each client
// has its own connection (hiredis). kvtier is a server given by address, or one started in-process.
// Not thread-safe; call from one thread.
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
  Status Validate() const;
};

struct BenchRow {
  std::string target;  // "kvtier" or "redis"
  std::string op;      // "put" or "get"
  uint64_t chunk_bytes = 0;
  int clients = 0;
  uint64_t ops = 0;
  double seconds = 0;
  double gbps = 0;     // payload bytes / wall time, 1e9 bytes per second
  double p50_us = 0;
  double p99_us = 0;
};

// Runs every cell; prints one progress line per cell to `progress`.
Result<std::vector<BenchRow>> RunThroughputBench(const BenchOptions& options, std::ostream& progress);

// Side-by-side table: one line per (op, chunk size, clients), kvtier and Redis with their ratio.
void PrintTable(const std::vector<BenchRow>& rows, std::ostream& out);
// {"results":[{"target":..,"op":..,"chunk_bytes":..,"clients":..,"gbps":..,"p50_us":..,"p99_us":..}, ...],
//  "ratios":[{"op":..,"chunk_bytes":..,"clients":..,"gbps_ratio":..,"p99_ratio":..}, ...]}
std::string ToJsonLine(const std::vector<BenchRow>& rows);

}  // namespace kvtier::bench
