#include "kvtier/bench/disk.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "kvtier/kvstore/store.h"

extern char** environ;

namespace kvtier::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

ModelFingerprint Fingerprint(uint64_t bytes_per_token, uint32_t tokens) {
  ModelFingerprint fp;
  fp.model_id = "kvtier-bench-disk";
  fp.num_layers = 1;
  fp.num_kv_heads = 1;
  fp.head_dim = static_cast<uint32_t>(bytes_per_token / 4);  // fp16, K and V
  fp.dtype = DType::kFp16;
  fp.chunk_tokens = tokens;
  return fp;
}

StoreOptions StoreFor(const std::string& dir, uint64_t host, uint64_t disk, uint32_t qd) {
  StoreOptions o;
  o.host_capacity_bytes = host;
  o.host_prefault = true;
  o.max_chunk_bytes = 256ull << 20;
  o.disk.path = dir;
  o.disk.capacity_bytes = disk;
  o.disk.queue_depth = qd;
  o.disk.background_demotion = false;
  o.disk.demote_watermark = 1.0;
  o.disk.demote_batch_bytes = 32ull << 20;  // enough I/Os per submission to fill the queue
  return o;
}

// Puts `count` chunks of `fp` straight into the store's host tier.
Status Fill(Store* store, const ModelFingerprint& fp, uint64_t count) {
  auto scope = store->OpenScope("bench", fp, true);
  if (!scope.ok()) return scope.status();
  const uint64_t bytes = uint64_t{fp.chunk_tokens} * fp.KvBytesPerToken();
  std::vector<std::byte> payload(bytes);
  std::mt19937_64 rng(7);
  for (auto& b : payload) b = static_cast<std::byte>(rng());
  const uint64_t checksum = Checksum64(payload);
  std::vector<uint32_t> tokens(fp.chunk_tokens);
  std::iota(tokens.begin(), tokens.end(), 0u);
  for (uint64_t i = 0; i < count; ++i) {
    auto put = store->BeginPut(*scope, {{0xd15c, i}, tokens, CodecId::kRaw, bytes, checksum, 0, false, nullptr});
    if (!put.ok()) return put.status();
    KVTIER_RETURN_IF_ERROR(put->Append(payload));
    auto done = put->Commit();
    if (!done.ok()) return done.status();
  }
  return Status::Ok();
}

Result<double> RunFio(const DiskBenchOptions& o, const std::string& rw, uint64_t bs, uint32_t qd) {
  const std::string file = o.dir + "/fio.dat";
  const std::string out = o.dir + "/fio.json";
  std::vector<std::string> args = {o.fio,
                                   "--name=kvtier-peer",
                                   "--filename=" + file,
                                   "--size=" + std::to_string(o.total_bytes),
                                   "--rw=" + rw,
                                   "--bs=" + std::to_string(bs),
                                   "--iodepth=" + std::to_string(qd),
                                   "--ioengine=io_uring",
                                   "--fixedbufs=1",  // kvtier registers its buffers too
                                   "--direct=1",
                                   "--numjobs=1",
                                   "--time_based",  // 2 s of steady state, past fio's start-up
                                   "--runtime=2",
                                   "--output-format=json",
                                   "--output=" + out};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, o.fio.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
    return Unavailable("cannot run " + o.fio + " (install fio: scripts/install-deps.sh)");
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Internal("fio failed for " + rw);
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  const std::string json = text.str();
  const std::string section = rw == "write" ? "\"write\" : {" : "\"read\" : {";
  const size_t at = json.find(section);
  const size_t bw = at == std::string::npos ? at : json.find("\"bw_bytes\"", at);
  if (bw == std::string::npos) return Internal("no bandwidth in fio's output");
  return std::stod(json.substr(json.find(':', bw) + 1)) / 1e9;
}

// kvtier splits transfers into 1 MiB I/Os, so `readers` chunk reads keep this many I/Os in flight
// (plus one 4 KiB header read each); fio gets the same depth of 1 MiB random reads.
uint32_t ReadQueueDepth(const DiskBenchOptions& o) {
  return o.readers * static_cast<uint32_t>((o.chunk_bytes + (1u << 20) - 1) >> 20);
}

}  // namespace

Status DiskBenchOptions::Validate() const {
  if (dir.empty()) return InvalidArgument("--dir is empty");
  if (chunk_bytes < 4096 || chunk_bytes % 4096 != 0) return InvalidArgument("chunk size must be a multiple of 4 KiB");
  if (total_bytes < 8 * chunk_bytes) return InvalidArgument("--bytes must hold at least 8 chunks");
  if (write_queue_depth == 0 || readers == 0) return InvalidArgument("queue depths must be > 0");
  return Status::Ok();
}

Result<DiskBenchReport> RunDiskBench(const DiskBenchOptions& o, std::ostream& progress) {
  KVTIER_RETURN_IF_ERROR(o.Validate());
  std::filesystem::create_directories(o.dir);
  const std::string kv_dir = o.dir + "/kvtier";
  std::filesystem::remove_all(kv_dir);
  DiskBenchReport report;
  const uint32_t tokens = static_cast<uint32_t>(o.chunk_bytes / 4096);
  const ModelFingerprint fp = Fingerprint(4096, tokens);
  const uint64_t chunks = o.total_bytes / o.chunk_bytes;
  const uint64_t record = 4096 + o.chunk_bytes + 4096;
  const uint64_t host = chunks * record + (64ull << 20);
  const uint64_t disk = (chunks * record + (64ull << 20)) * 5 / 4 + (128ull << 20);

  // Writes: demotion of everything in DRAM, in batches of io_uring submissions.
  {
    progress << "kvtier: filling " << chunks << " chunks of " << o.chunk_bytes << " bytes in DRAM\n";
    auto store = Store::Open(StoreFor(kv_dir, host, disk, o.write_queue_depth));
    if (!store.ok()) return store.status();
    KVTIER_RETURN_IF_ERROR(Fill(store->get(), fp, chunks));
    const auto start = Clock::now();
    const uint64_t demoted = (*store)->DemoteAll();
    const double secs = Seconds(start);
    const StoreStats stats = (*store)->Stats();
    if (demoted != chunks) return Internal("demoted " + std::to_string(demoted) + " of " + std::to_string(chunks));
    report.direct_io = stats.disk.direct_io;
    report.rows.push_back({"kvtier", "write", 1u << 20, o.write_queue_depth,
                           static_cast<double>(stats.disk.write_bytes) / secs / 1e9});
    progress << "kvtier: demoted " << demoted << " chunks in " << secs << " s\n";
  }
  // Reads: a restarted store has every chunk on disk only; readers promote random chunks.
  {
    auto store = Store::Open(StoreFor(kv_dir, host, disk, o.write_queue_depth));
    if (!store.ok()) return store.status();
    auto scope = (*store)->OpenScope("bench", fp, false);
    if (!scope.ok()) return scope.status();
    std::atomic<uint64_t> next{0}, bytes{0}, misses{0};
    std::vector<uint64_t> order(chunks);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(11));
    const auto start = Clock::now();
    std::vector<std::thread> readers;
    for (uint32_t t = 0; t < o.readers; ++t) {
      readers.emplace_back([&] {
        for (uint64_t i; (i = next.fetch_add(1)) < chunks;) {
          auto ref = (*store)->Get(*scope, {0xd15c, order[i]});
          if (ref.ok() && *ref) bytes += ref->payload().size();
          else ++misses;
        }
      });
    }
    for (auto& r : readers) r.join();
    const double secs = Seconds(start);
    if (misses > 0) return Internal(std::to_string(misses.load()) + " chunks missing after restart");
    report.rows.push_back({"kvtier", "read", 1u << 20, ReadQueueDepth(o), static_cast<double>(bytes) / secs / 1e9});
    progress << "kvtier: read " << chunks << " random chunks in " << secs << " s\n";
  }
  std::filesystem::remove_all(kv_dir);
  if (!o.fio.empty()) {
    auto w = RunFio(o, "write", 1u << 20, o.write_queue_depth);
    if (!w.ok()) return w.status();
    report.rows.push_back({"fio", "write", 1u << 20, o.write_queue_depth, *w});
    auto r = RunFio(o, "randread", 1u << 20, ReadQueueDepth(o));
    if (!r.ok()) return r.status();
    report.rows.push_back({"fio", "read", 1u << 20, ReadQueueDepth(o), *r});
    std::filesystem::remove(o.dir + "/fio.dat");
    std::filesystem::remove(o.dir + "/fio.json");
    progress << "fio: done\n";
  }
  // Restart: time Store::Open over an index of many small chunks.
  if (o.restart_entries > 0) {
    const ModelFingerprint tiny = Fingerprint(512, 1);  // 512-byte payload, one 8 KiB record each
    const uint64_t host_bytes = o.restart_entries * 4096 + (64ull << 20);
    const uint64_t disk_bytes = o.restart_entries * 8192 * 5 / 4 + (256ull << 20);
    {
      auto store = Store::Open(StoreFor(kv_dir, host_bytes, disk_bytes, o.write_queue_depth));
      if (!store.ok()) return store.status();
      progress << "kvtier: writing " << o.restart_entries << " index entries\n";
      KVTIER_RETURN_IF_ERROR(Fill(store->get(), tiny, o.restart_entries));
      (*store)->DemoteAll();
    }
    auto options = StoreFor(kv_dir, host_bytes, disk_bytes, o.write_queue_depth);
    options.host_prefault = false;  // time the index load, not the arena
    const auto start = Clock::now();
    auto store = Store::Open(options);
    report.restart_seconds = Seconds(start);
    if (!store.ok()) return store.status();
    report.restart_entries = (*store)->Stats().tiers.at(1).chunks;
    if (report.restart_entries != o.restart_entries) {
      return Internal("restart found " + std::to_string(report.restart_entries) + " of " +
                      std::to_string(o.restart_entries) + " entries");
    }
    store->reset();
    std::filesystem::remove_all(kv_dir);
  }
  return report;
}

void PrintDiskTable(const DiskBenchReport& report, std::ostream& out) {
  out << std::left << std::setw(7) << "op" << std::setw(12) << "block" << std::setw(6) << "qd" << std::right
      << std::setw(13) << "kvtier GB/s" << std::setw(11) << "fio GB/s" << std::setw(8) << "ratio" << "\n";
  out << std::fixed << std::setprecision(2);
  for (const char* op : {"write", "read"}) {
    const DiskBenchRow* k = nullptr;
    const DiskBenchRow* f = nullptr;
    for (const auto& r : report.rows) {
      if (r.op == op) (r.target == "kvtier" ? k : f) = &r;
    }
    if (k == nullptr) continue;
    out << std::left << std::setw(7) << op << std::setw(12) << k->block_bytes << std::setw(6) << k->queue_depth
        << std::right << std::setw(13) << k->gbps << std::setw(11) << (f ? f->gbps : 0.0) << std::setw(8)
        << (f && f->gbps > 0 ? k->gbps / f->gbps : 0.0) << "\n";
  }
  out << "O_DIRECT: " << (report.direct_io ? "yes" : "no (buffered fallback)") << "\n";
  if (report.restart_entries > 0) {
    out << "restart with " << report.restart_entries << " index entries: " << std::setprecision(3)
        << report.restart_seconds << " s\n";
  }
}

std::string DiskJsonLine(const DiskBenchReport& report) {
  std::ostringstream out;
  out << std::setprecision(6) << "{\"bench\":\"disk\",\"results\":[";
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const auto& r = report.rows[i];
    out << (i ? "," : "") << "{\"target\":\"" << r.target << "\",\"op\":\"" << r.op << "\",\"block_bytes\":"
        << r.block_bytes << ",\"queue_depth\":" << r.queue_depth << ",\"gbps\":" << r.gbps << "}";
  }
  out << "],\"ratios\":[";
  bool first = true;
  for (const char* op : {"write", "read"}) {
    double k = 0, f = 0;
    for (const auto& r : report.rows) {
      if (r.op == op) (r.target == "kvtier" ? k : f) = r.gbps;
    }
    if (f <= 0) continue;
    out << (first ? "" : ",") << "{\"op\":\"" << op << "\",\"ratio\":" << k / f << "}";
    first = false;
  }
  out << "],\"direct_io\":" << (report.direct_io ? "true" : "false") << ",\"restart\":{\"entries\":"
      << report.restart_entries << ",\"seconds\":" << report.restart_seconds << "}}";
  return out.str();
}

}  // namespace kvtier::bench
