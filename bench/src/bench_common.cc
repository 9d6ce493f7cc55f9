#include "bench_common.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "kvtier/kvstore/server.h"

namespace kvtier::bench {

ModelFingerprint BenchFingerprint(uint64_t chunk_bytes) {
  ModelFingerprint fp;
  fp.model_id = "kvtier-bench";
  fp.num_layers = 1;
  fp.num_kv_heads = 8;
  fp.head_dim = 128;
  fp.dtype = DType::kFp16;
  fp.chunk_tokens = static_cast<uint32_t>(chunk_bytes / kBytesPerToken);
  return fp;
}

Result<std::unique_ptr<Client>> ConnectBenchClient(const std::string& endpoint, const std::string& name_space,
                                                   uint64_t chunk_bytes, LocalPathMode mode) {
  ClientOptions options;
  options.endpoint = endpoint;
  options.name_space = name_space;
  options.fingerprint = BenchFingerprint(chunk_bytes);
  options.max_attempts = 1;
  options.async_threads = 1;
  options.local_path = mode;
  return Client::Connect(options);
}

namespace {

double Seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

double ThreadCpuSeconds() { return Seconds(CLOCK_THREAD_CPUTIME_ID); }
double ProcessCpuSeconds() { return Seconds(CLOCK_PROCESS_CPUTIME_ID); }

uint64_t ProcessRssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;  // "... kB"
  }
  return 0;
}

void FillRandom(std::vector<std::byte>& bytes, uint64_t seed) {
  uint64_t x = seed;
  for (size_t i = 0; i < bytes.size(); i += sizeof(uint64_t)) {
    x += 0x9e3779b97f4a7c15ull;  // splitmix64
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(bytes.data() + i, &z, std::min(sizeof(z), bytes.size() - i));
  }
}

std::string Fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string Size(uint64_t bytes) {
  if (bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes >> 10) + " KiB";
}

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

BenchRow MakeRow(const std::string& target, const std::string& op, uint64_t chunk, int clients, CellResult r) {
  BenchRow row;
  row.target = target;
  row.op = op;
  row.chunk_bytes = chunk;
  row.clients = clients;
  row.ops = r.ops;
  row.seconds = r.seconds;
  row.gbps = static_cast<double>(r.ops) * static_cast<double>(chunk) / r.seconds / 1e9;
  row.p50_us = Percentile(r.latency_us, 0.50);
  row.p99_us = Percentile(r.latency_us, 0.99);
  return row;
}

Buffers::Buffers(int threads, uint64_t bytes) {
  for (int t = 0; t < threads; ++t) {
    payload.emplace_back(bytes);
    FillRandom(payload.back(), 42);  // every thread puts the same bytes
    dest.emplace_back(bytes, std::byte{0});
  }
}

Result<std::unique_ptr<InProcessServer>> InProcessServer::Start(const BenchOptions& options, bool shm) {
  const uint64_t arena = options.working_set_bytes + options.working_set_bytes / 4 + (64ull << 20);
  const uint64_t max_chunk = *std::max_element(options.chunk_bytes.begin(), options.chunk_bytes.end());
  ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "";
  config.store.host_capacity_bytes = arena;
  config.store.max_chunk_bytes = std::max<uint64_t>(config.store.max_chunk_bytes, max_chunk);
  std::unique_ptr<InProcessServer> out(new InProcessServer());
  if (shm) {
    const char* tmp = getenv("TMPDIR");
    std::string dir = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/kvtier-bench-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) return Unavailable("mkdtemp " + dir + ": " + std::strerror(errno));
    out->dir_ = dir;
    config.shared_memory.socket_path = dir + "/kvtier.sock";
    // One put in flight per connection: a window of one chunk (plus slack) instead of 64 MiB per client.
    config.shared_memory.put_window_bytes = ((max_chunk + (1ull << 20) - 1) >> 20 << 20) + (1ull << 20);
    config.shared_memory.max_connections = 1024;
    config.store.shared_arena_bytes[kShmNamespace] = arena;
  }
  auto server = Server::Start(config);
  if (!server.ok()) return server.status();  // the destructor removes the directory
  out->server_ = std::move(server).value();
  return out;
}

InProcessServer::~InProcessServer() {
  server_.reset();  // removes the socket file
  if (!dir_.empty()) rmdir(dir_.c_str());
}

std::string InProcessServer::address() const { return server_->address(); }

Result<std::unique_ptr<InProcessServer>> StartBenchServer(const BenchOptions& options, std::ostream& progress) {
  auto server = InProcessServer::Start(options, /*shm=*/true);
  if (!server.ok()) {
    progress << "kvtier: cannot start the server with the shared-memory path (" << server.status().ToString()
             << "); kvtier-shm rows are skipped\n";
    server = InProcessServer::Start(options, /*shm=*/false);
    if (!server.ok()) return server.status();
  }
  progress << "kvtier: in-process server on " << (*server)->address()
           << ((*server)->shm() ? " (shared-memory path on)" : "") << "\n";
  return server;
}

}  // namespace kvtier::bench
