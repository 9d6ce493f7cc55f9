// The NVMe tier benchmark behind `kvtier bench-disk`: demotion write throughput and random chunk reads
// (promotions) of kvtier's NVMe tier, against fio (ioengine=io_uring, direct=1) with the same block size
// and queue depth in the same directory, run side by side; plus the time a restart takes to load an index
// of many entries. Uses the Store directly (no network), so it measures the tier, not gRPC.
// Not thread-safe; call from one thread.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier::bench {

struct DiskBenchOptions {
  std::string dir = "kvtier-bench-disk";    // created if missing; its files are removed afterwards
  uint64_t chunk_bytes = 2ull << 20;        // payload per chunk
  uint64_t total_bytes = 1ull << 30;        // written by each target
  uint32_t write_queue_depth = 32;          // io_uring depth for writes (kvtier and fio)
  uint32_t readers = 8;                     // concurrent chunk reads (each 1 MiB I/Os: the read queue depth
                                            // is readers x chunk MiB)
  uint64_t restart_entries = 100000;        // index size for the restart timing (0 skips it)
  std::string fio = "fio";                  // empty skips the fio peer
  Status Validate() const;
};

struct DiskBenchRow {
  std::string target;  // "kvtier" or "fio"
  std::string op;      // "write" or "read"
  uint64_t block_bytes = 0;
  uint32_t queue_depth = 0;
  double gbps = 0;
};

struct DiskBenchReport {
  std::vector<DiskBenchRow> rows;
  bool direct_io = false;
  uint64_t restart_entries = 0;
  double restart_seconds = 0;
};

Result<DiskBenchReport> RunDiskBench(const DiskBenchOptions& options, std::ostream& progress);
void PrintDiskTable(const DiskBenchReport& report, std::ostream& out);
// {"results":[{"target":..,"op":..,"block_bytes":..,"queue_depth":..,"gbps":..},...],
//  "ratios":[{"op":..,"ratio":..}],"restart":{"entries":N,"seconds":X}}
std::string DiskJsonLine(const DiskBenchReport& report);

}  // namespace kvtier::bench
