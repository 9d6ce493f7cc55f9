// The soak mode of `kvtier bench` (--soak-seconds N): a steady mixed load against the in-process server for
// N seconds while the process's resident memory (VmRSS) is sampled, to show whether memory grows under load.
//
// Client threads (BenchOptions.soak_clients, default the largest of `clients`) each loop: put a fresh key
// (its payload stamped with the key's sequence number), get it back, get a random live older key, delete the
// key that fell out of the thread's window, so the live data stays within the working set. Every other thread
// uses the shared-memory path (LocalPathMode::kRequire; when the server could start it), the rest gRPC only;
// chunk sizes alternate over `chunk_bytes`. Each get is checked (its stamp; all bytes every 16th key).
// Samples: at rest (server started, clients connected, buffers touched, before load), every
// max(1, N/20) seconds, and at the end. RSS includes the client threads' fixed buffers; what matters is
// growth after warm-up (the first sample at or after 10% of the run). Not thread-safe; call from one thread.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/bench/throughput.h"

namespace kvtier::bench {

struct SoakSample {
  double t = 0;           // seconds since the load started
  uint64_t rss_bytes = 0;
  uint64_t ops = 0;       // puts and gets so far (deletes not counted)
  double gbps = 0;        // payload bytes of those puts and gets over the interval before, 1e9 bytes per second
};

struct SoakReport {
  double seconds = 0;     // asked duration
  int clients = 0;
  int shm_clients = 0;    // of `clients`, those on the shared-memory path
  std::vector<SoakSample> samples;  // [0] at rest (t = 0), the last at the end
  uint64_t rest_rss_bytes = 0;
  uint64_t warm_rss_bytes = 0;
  uint64_t final_rss_bytes = 0;
  int64_t growth_after_warmup_bytes = 0;  // final - warm
};

// Refuses options.server (the RSS sampled is this process's). Prints a progress line per sample.
Result<SoakReport> RunSoak(const BenchOptions& options, std::ostream& progress);
void PrintSoakTable(const SoakReport& report, std::ostream& out);
// {"bench":"soak","seconds":..,"clients":..,"shm_clients":..,"samples":[{"t":..,"rss_bytes":..,"ops":..,"gbps":..},
//  ...],"rest_rss_bytes":..,"warm_rss_bytes":..,"final_rss_bytes":..,"growth_after_warmup_bytes":..}
std::string SoakJsonLine(const SoakReport& report);

}  // namespace kvtier::bench
