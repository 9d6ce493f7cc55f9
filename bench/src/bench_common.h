// What the throughput, lookup and soak benchmarks share: timing of parallel client threads (wall time,
// per-call latency, CPU time), rows, buffers touched before timing, and the in-process server.
// Internal to kvtier_bench.
#pragma once

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/bench/throughput.h"
#include "kvtier/client/client.h"

namespace kvtier {
class Server;
}

namespace kvtier::bench {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kBytesPerToken = 4096;  // 1 layer x 2 x 8 heads x 128 dims x fp16
inline constexpr char kGrpcNamespace[] = "kvtier-bench";
inline constexpr char kShmNamespace[] = "kvtier-bench-shm";

ModelFingerprint BenchFingerprint(uint64_t chunk_bytes);
// A client for the bench: one attempt per call, one async worker.
Result<std::unique_ptr<Client>> ConnectBenchClient(const std::string& endpoint, const std::string& name_space,
                                                   uint64_t chunk_bytes, LocalPathMode mode);

double ThreadCpuSeconds();   // CPU time of the calling thread
double ProcessCpuSeconds();  // CPU time of every thread of this process
uint64_t ProcessRssBytes();  // VmRSS of /proc/self/status; 0 if unreadable
void FillRandom(std::vector<std::byte>& bytes, uint64_t seed);
std::string Size(uint64_t bytes);
std::string Fixed(double v, int digits);  // v with `digits` decimals

// One thread's latencies and CPU time, gathered after the run.
struct ThreadLog {
  std::vector<double> latency_us;
  Clock::time_point begin, end;  // of its loop
  double cpu_seconds = 0;
  Status error;
};

struct CellResult {
  double seconds = 0;
  uint64_t ops = 0;
  std::vector<double> latency_us;
  double client_cpu_seconds = 0;   // sum of the client threads' own CPU time over the timed region
  double process_cpu_seconds = 0;  // the whole process over the same region
};

double Percentile(std::vector<double>& v, double q);
BenchRow MakeRow(const std::string& target, const std::string& op, uint64_t chunk, int clients, CellResult r);

// Runs `op(thread, index)` for indices [0, total) split evenly over `threads` threads, all starting together.
template <typename Op>
Result<CellResult> RunParallel(int threads, uint64_t total, Op op) {
  std::vector<ThreadLog> logs(threads);
  std::barrier start(threads + 1);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      ThreadLog& log = logs[t];
      log.latency_us.reserve(total / threads + 1);
      start.arrive_and_wait();
      const double cpu0 = ThreadCpuSeconds();
      log.begin = Clock::now();
      for (uint64_t i = t; i < total && log.error.ok(); i += threads) {
        const auto t0 = Clock::now();
        log.error = op(t, i);
        log.latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      log.end = Clock::now();
      log.cpu_seconds = ThreadCpuSeconds() - cpu0;
    });
  }
  const double process_cpu0 = ProcessCpuSeconds();
  start.arrive_and_wait();
  for (auto& w : workers) w.join();
  CellResult out;
  out.process_cpu_seconds = ProcessCpuSeconds() - process_cpu0;
  out.ops = total;
  // Wall time from the first thread's start to the last one's end: the main thread may wake late.
  Clock::time_point begin = logs[0].begin, end = logs[0].end;
  for (auto& log : logs) {
    if (!log.error.ok()) return log.error;
    begin = std::min(begin, log.begin);
    end = std::max(end, log.end);
    out.latency_us.insert(out.latency_us.end(), log.latency_us.begin(), log.latency_us.end());
    out.client_cpu_seconds += log.cpu_seconds;
  }
  out.seconds = std::chrono::duration<double>(end - begin).count();
  return out;
}

// Per-thread payload and destination buffers, allocated and touched once, outside the timed region.
struct Buffers {
  std::vector<std::vector<std::byte>> payload;  // per thread: what is put
  std::vector<std::vector<std::byte>> dest;     // per thread: where gets land
  Buffers(int threads, uint64_t bytes);
};

// A kvtier server in this process on a free loopback port; with `shm`, also the shared-memory path
// (a Unix socket in a fresh temp directory, and kShmNamespace's own arena). Stops on destruction.
class InProcessServer {
 public:
  static Result<std::unique_ptr<InProcessServer>> Start(const BenchOptions& options, bool shm);
  ~InProcessServer();
  std::string address() const;
  bool shm() const { return !dir_.empty(); }

 private:
  InProcessServer() = default;
  std::string dir_;  // holds the socket; removed after the server stops
  std::unique_ptr<Server> server_;
};

// Starts the in-process server with the shared-memory path, or without it (with a note) when this
// machine cannot offer it.
Result<std::unique_ptr<InProcessServer>> StartBenchServer(const BenchOptions& options, std::ostream& progress);

// Rows of the peers and of the other measurements (redis_bench.cc, memcpy_row.cc, lookup.cc).
Status BenchRedis(int port, uint64_t chunk, int clients, uint64_t keys, int passes, std::vector<BenchRow>* rows);
// One copy pass over `source` in chunk-sized blocks into one destination buffer.
Status BenchMemcpy(const std::vector<std::byte>& source, uint64_t chunk, std::vector<BenchRow>* rows);
// Lookup rows for every client count; `server_cpu` says whether the process CPU time is the server's.
Status BenchLookups(const std::string& endpoint, const BenchOptions& options, bool server_cpu,
                    std::vector<BenchRow>* rows, std::ostream& progress);

}  // namespace kvtier::bench
