#include "kvtier/bench/soak.h"

#include <atomic>
#include <cstring>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <thread>

#include "bench_common.h"

namespace kvtier::bench {
namespace {

constexpr uint64_t kSoakTag = 0x50a1;

// One client thread's state. Its counters are read by the sampling thread.
struct SoakWorker {
  int index = 0;
  bool shm = false;
  uint64_t chunk = 0;
  uint64_t window = 0;  // live keys kept
  uint64_t next = 0;    // keys put so far
  std::unique_ptr<Client> client;
  std::vector<std::byte> payload, dest;
  std::vector<uint32_t> tokens;
  alignas(64) std::atomic<uint64_t> ops{0};
  std::atomic<uint64_t> bytes{0};
  Status error;

  ChunkKey Key(uint64_t seq) const { return ChunkKey{kSoakTag << 32 | static_cast<uint64_t>(index), seq}; }
};

Status GetAndCheck(SoakWorker& w, uint64_t seq) {
  auto r = w.client->Get(w.Key(seq), w.dest);
  if (!r.ok()) return r.status();
  if (!r->found || r->bytes != w.chunk) return Internal("soak: a live key was missed");
  uint64_t stamp = 0;
  std::memcpy(&stamp, w.dest.data(), sizeof(stamp));
  bool same = stamp == seq;
  if (same && seq % 16 == 0) same = std::memcmp(w.dest.data() + 8, w.payload.data() + 8, w.chunk - 8) == 0;
  return same ? Status::Ok() : DataLoss("soak: a get returned other bytes than were put");
}

// put a fresh key, get it, get a random live one, delete the one that left the window.
Status Step(SoakWorker& w, uint64_t& rng) {
  const uint64_t seq = w.next;
  std::memcpy(w.payload.data(), &seq, sizeof(seq));
  auto put = w.client->Put(w.Key(seq), w.tokens, w.payload);
  if (!put.ok()) return put.status();
  if (put->already_present) return Internal("soak: a fresh key was already present");
  ++w.next;
  KVTIER_RETURN_IF_ERROR(GetAndCheck(w, seq));
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;  // xorshift64
  KVTIER_RETURN_IF_ERROR(GetAndCheck(w, w.next - 1 - rng % std::min(w.next, w.window)));
  if (w.next > w.window) {
    const ChunkKey old = w.Key(w.next - 1 - w.window);
    auto d = w.client->Delete({&old, 1});
    if (!d.ok()) return d.status();
  }
  w.ops.fetch_add(3, std::memory_order_relaxed);
  w.bytes.fetch_add(3 * w.chunk, std::memory_order_relaxed);
  return Status::Ok();
}

void RunWorker(SoakWorker& w, const std::atomic<bool>& stop, std::atomic<bool>& failed) {
  uint64_t rng = 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(w.index);
  while (!stop.load(std::memory_order_relaxed)) {
    Status s = Step(w, rng);
    if (!s.ok()) {
      w.error = std::move(s);
      failed.store(true);
      return;
    }
  }
}

// Connected (one miss already answered, so the connection and any mapping exist) and with touched buffers.
Result<std::unique_ptr<SoakWorker>> MakeWorker(const BenchOptions& options, const std::string& endpoint, int index,
                                               int threads, bool shm) {
  auto w = std::make_unique<SoakWorker>();
  w->index = index;
  w->shm = shm;
  w->chunk = options.chunk_bytes[static_cast<size_t>(index / 2) % options.chunk_bytes.size()];
  w->window = std::max<uint64_t>(2, options.working_set_bytes / static_cast<uint64_t>(threads) / w->chunk);
  w->payload.resize(w->chunk);
  FillRandom(w->payload, 42 + static_cast<uint64_t>(index));
  w->dest.assign(w->chunk, std::byte{0});
  w->tokens.resize(BenchFingerprint(w->chunk).chunk_tokens);
  std::iota(w->tokens.begin(), w->tokens.end(), 0u);
  auto c = ConnectBenchClient(endpoint, shm ? kShmNamespace : kGrpcNamespace, w->chunk,
                              shm ? LocalPathMode::kRequire : LocalPathMode::kOff);
  if (!c.ok()) return c.status();
  auto miss = (*c)->Get(ChunkKey{~0ull, ~0ull}, w->dest);
  if (!miss.ok()) return miss.status();
  w->client = std::move(c).value();
  return w;
}

Status Cleanup(SoakWorker& w) {
  if (w.shm) {
    const LocalPathStats s = w.client->local_stats();
    if (s.local_gets == 0 || s.fallbacks > 0) {
      return Internal("soak: a shared-memory client went over gRPC (" + std::to_string(s.fallbacks) +
                      " fallbacks): " + w.client->local_fallback_reason());
    }
  }
  std::vector<ChunkKey> live;
  for (uint64_t seq = w.next - std::min(w.next, w.window); seq < w.next; ++seq) live.push_back(w.Key(seq));
  if (live.empty()) return Status::Ok();
  auto d = w.client->Delete(live);
  return d.ok() ? Status::Ok() : d.status();
}

// Samples RSS and the workers' counters.
class Sampler {
 public:
  Sampler(const std::vector<std::unique_ptr<SoakWorker>>& workers, std::ostream& progress)
      : workers_(workers), progress_(progress) {}

  SoakSample Take(double t) {
    SoakSample s;
    s.t = t;
    s.rss_bytes = ProcessRssBytes();
    uint64_t bytes = 0;
    for (const auto& w : workers_) {
      s.ops += w->ops.load(std::memory_order_relaxed);
      bytes += w->bytes.load(std::memory_order_relaxed);
    }
    if (t > last_t_) s.gbps = static_cast<double>(bytes - last_bytes_) / (t - last_t_) / 1e9;
    last_t_ = t;
    last_bytes_ = bytes;
    std::ostringstream line;
    line << std::fixed << std::setprecision(1) << "soak: t=" << t << " s, RSS "
         << static_cast<double>(s.rss_bytes) / (1 << 20) << " MiB, " << s.ops << " ops, " << std::setprecision(2)
         << s.gbps << " GB/s\n";
    progress_ << line.str() << std::flush;
    return s;
  }

 private:
  const std::vector<std::unique_ptr<SoakWorker>>& workers_;
  std::ostream& progress_;
  double last_t_ = 0;
  uint64_t last_bytes_ = 0;
};

// Sleeps until `until` in short steps; false when a worker failed meanwhile.
bool WaitUntil(Clock::time_point until, const std::atomic<bool>& failed) {
  while (Clock::now() < until && !failed.load()) {
    std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(100)));
  }
  return !failed.load();
}

// Runs the load for `seconds`, sampling into `report`.
void RunLoad(std::vector<std::unique_ptr<SoakWorker>>& workers, double seconds, Sampler& sampler,
             SoakReport* report) {
  std::atomic<bool> stop{false}, failed{false};
  std::vector<std::thread> threads;
  const auto begin = Clock::now();
  for (auto& w : workers) threads.emplace_back([&, w = w.get()] { RunWorker(*w, stop, failed); });
  const auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - begin).count(); };
  const double interval = std::max(1.0, seconds / 20);
  for (int i = 1; i * interval < seconds - 1e-6; ++i) {
    if (!WaitUntil(begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(i * interval)),
                   failed)) {
      break;
    }
    report->samples.push_back(sampler.Take(elapsed()));
  }
  WaitUntil(begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)), failed);
  stop.store(true);
  for (auto& t : threads) t.join();
  report->samples.push_back(sampler.Take(elapsed()));
}

void Summarize(SoakReport* report) {
  report->rest_rss_bytes = report->samples.front().rss_bytes;
  report->final_rss_bytes = report->samples.back().rss_bytes;
  report->warm_rss_bytes = report->final_rss_bytes;
  for (size_t i = 1; i < report->samples.size(); ++i) {
    if (report->samples[i].t >= 0.1 * report->seconds) {
      report->warm_rss_bytes = report->samples[i].rss_bytes;
      break;
    }
  }
  report->growth_after_warmup_bytes =
      static_cast<int64_t>(report->final_rss_bytes) - static_cast<int64_t>(report->warm_rss_bytes);
}

}  // namespace

Result<SoakReport> RunSoak(const BenchOptions& options, std::ostream& progress) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  if (options.soak_seconds <= 0) return InvalidArgument("soak seconds must be > 0");
  if (!options.server.empty()) {
    return InvalidArgument("the soak samples this process's memory: it runs against the in-process server only");
  }
  auto server = StartBenchServer(options, progress);
  if (!server.ok()) return server.status();
  SoakReport report;
  report.seconds = options.soak_seconds;
  report.clients = options.soak_clients > 0 ? options.soak_clients
                                            : *std::max_element(options.clients.begin(), options.clients.end());
  std::vector<std::unique_ptr<SoakWorker>> workers;
  for (int t = 0; t < report.clients; ++t) {
    const bool shm = (*server)->shm() && t % 2 == 1;
    auto w = MakeWorker(options, (*server)->address(), t, report.clients, shm);
    if (!w.ok()) return w.status();
    report.shm_clients += shm ? 1 : 0;
    workers.push_back(std::move(w).value());
  }
  progress << "soak: " << report.clients << " client(s), " << report.shm_clients << " on shared memory, "
           << options.soak_seconds << " s\n";
  Sampler sampler(workers, progress);
  report.samples.push_back(sampler.Take(0));
  RunLoad(workers, report.seconds, sampler, &report);
  for (auto& w : workers) {
    if (!w->error.ok()) return w->error;
  }
  for (auto& w : workers) KVTIER_RETURN_IF_ERROR(Cleanup(*w));
  Summarize(&report);
  return report;
}

}  // namespace kvtier::bench
