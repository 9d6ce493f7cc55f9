// The scale-out benchmark behind `kvtier bench-cluster`: client-side sharding (ShardedClient, one replica,
// gRPC only) over 1, 2 and 3 kvtier servers started in this process.
//
// For each server count N, on N fresh servers: `clients` threads share one ShardedClient (as the threads of
// an inference worker would). An untimed round puts, reads and deletes the working set under other keys, so
// that the heap that gRPC messages use has been faulted in. Then they put a working set of fresh keys (timed),
// get it back `get_passes` times (timed; each get checks the key's index stamped in its first 8 bytes), read
// it once more untimed comparing every byte (any mismatch fails the bench), and delete it. Rows give aggregate
// GB/s (payload bytes per wall second, 1e9), per-call p50/p99, and the smallest and largest share of the keys
// that one server was given (rendezvous placement; 1/N each when perfectly even).
// Then, with no servers, the keys that move: for `moved_keys` keys and node names "node-0:7070", ... the share
// of keys whose first choice changes from N to N+1 nodes and from N to N-1 (the last node removed), for
// N = 2..moved_max_nodes, next to the ideal 1/(N+1) and 1/N.
//
// On a machine with few cores (2 here) the GB/s curve is flat: every server and every client thread runs in
// this one process on the same cores, so an added server adds no CPU, only fan-out (one more connection and
// more threads on the same cores). The rows show the cost of fan-out and how evenly keys are placed, not
// scale-out capacity, which needs servers on machines of their own.
// All buffers are allocated and touched before timing. Not thread-safe; call from one thread.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier::bench {

struct ClusterBenchOptions {
  std::vector<int> servers = {1, 2, 3};    // server counts, one fresh cluster each, in this order
  int clients = 4;                         // threads sharing the ShardedClient
  uint64_t chunk_bytes = 2ull << 20;
  uint64_t working_set_bytes = 256ull << 20;  // bytes put per server count (distinct keys)
  int get_passes = 2;
  uint64_t moved_keys = 100000;            // keys for the keys-moved table; 0 skips it
  int moved_max_nodes = 8;                 // N = 2..this
  Status Validate() const;
};

struct ClusterRow {
  int servers = 0;
  std::string op;  // "put" or "get"
  int clients = 0;
  uint64_t chunk_bytes = 0;
  uint64_t ops = 0;
  double seconds = 0;
  double gbps = 0;
  double p50_us = 0;
  double p99_us = 0;
  double min_share = 0;  // of the working set's keys, on the server given the fewest
  double max_share = 0;  // ... and the most
};

struct MovedRow {
  int from = 0;
  int to = 0;
  double moved_share = 0;     // keys whose first choice changed
  double expected_share = 0;  // 1/to when adding a node, 1/from when removing one
};

struct ClusterReport {
  std::vector<ClusterRow> rows;
  std::vector<MovedRow> moved;
};

Result<ClusterReport> RunClusterBench(const ClusterBenchOptions& options, std::ostream& progress);
// The keys-moved rows alone (no servers).
std::vector<MovedRow> MeasureKeysMoved(uint64_t keys, int max_nodes);
// One line per server count (put and get side by side), then the keys-moved table.
void PrintClusterTable(const ClusterReport& report, std::ostream& out);
// {"bench":"cluster","results":[{"servers":N,"op":..,"clients":..,"chunk_bytes":..,"gbps":..,"p50_us":..,
//   "p99_us":..,"min_share":..,"max_share":..},...],"moved":[{"from":N,"to":M,"moved_share":..,
//   "expected_share":..},...]}
std::string ClusterJsonLine(const ClusterReport& report);

}  // namespace kvtier::bench
