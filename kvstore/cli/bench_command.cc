#include <functional>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "flags.h"
#include "kvtier/bench/cluster.h"
#include "kvtier/bench/codec_eval.h"
#include "kvtier/bench/disk.h"
#include "kvtier/bench/gpu.h"
#include "kvtier/bench/reuse_eval.h"
#include "kvtier/bench/soak.h"
#include "kvtier/bench/throughput.h"
#include "kvtier/kvstore/config.h"

namespace kvtier::cli {
namespace {

template <typename T, typename Parse>
Status ParseList(const std::string& text, std::vector<T>* out, Parse parse) {
  out->clear();
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto v = parse(item);
    if (!v.ok()) return v.status();
    out->push_back(*v);
  }
  if (out->empty()) return InvalidArgument("empty list");
  return Status::Ok();
}

// Parses the flags and answers --help. Returns -1 to go on, or the exit code.
int ParseBenchFlags(FlagSet& flags, int argc, char** argv, const char* command, const std::function<Status()>& check = {}) {
  Status s = flags.Parse(argc, argv, 2);
  if (s.ok() && flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (s.ok()) s = flags.Apply();
  if (s.ok() && check) s = check();
  if (!s.ok()) {
    std::cerr << "kvtier " << command << ": " << s.ToString() << "\n";
    return 1;
  }
  return -1;
}

// Prints a benchmark's table, and its JSON line last when asked; the exit code.
template <typename R, typename Table, typename Json>
int PrintReport(const char* command, const Result<R>& report, Table table, Json json_line, bool json) {
  if (!report.ok()) {
    std::cerr << "kvtier " << command << ": " << report.status().ToString() << "\n";
    return 1;
  }
  table(*report, std::cout);
  if (json) std::cout << json_line(*report) << "\n";
  return 0;
}

}  // namespace

int BenchCommand(int argc, char** argv) {
  bench::BenchOptions options;
  bool json = false;
  FlagSet flags("kvtier bench [--server ADDR] [--json] | kvtier bench --soak-seconds N [--json]",
                "Measures put and get throughput (GB/s) and latency (p50/p99) of kvtier and of Redis storing the\n"
                "same bytes, side by side in one run, per chunk size and client count. kvtier rows are gRPC only;\n"
                "kvtier-shm rows move the same bytes through the same-host shared-memory path (the bench fails if\n"
                "they fall back to gRPC); memcpy rows are one core copying chunk-sized blocks of the working set\n"
                "(the fastest of three passes), the ceiling for a get. Redis is a redis-server started on a free\n"
                "loopback port with persistence off. Without --server, a kvtier server is started in-process\n"
                "with the shared-memory path on a Unix socket in a temp directory; with --server, kvtier-shm rows\n"
                "are skipped unless that server offers the path for namespace kvtier-bench-shm. Then lookup rows:\n"
                "Lookup of 64-key prefix chains (all hits), keys per second and, in-process only, keys per second\n"
                "of server CPU time.\n"
                "With --soak-seconds N: no cells; a steady mixed put/get/delete load on the in-process server for\n"
                "N seconds, sampling the process RSS at rest, every max(1, N/20) s and at the end.\n"
                "Prints a table, then (with --json) one JSON line as the last line of output.");
  flags.AddString("server", "ADDR", &options.server, "kvtier address host:port (default: start one in-process)");
  flags.AddCustom("chunk-sizes", "LIST", [&](const std::string& v) {
    return ParseList<uint64_t>(v, &options.chunk_bytes, [](const std::string& s) { return ParseByteSize(s); });
  }, "chunk sizes, comma-separated (default 256KiB,2MiB); the soak alternates over them");
  flags.AddCustom("clients", "LIST", [&](const std::string& v) {
    return ParseList<int>(v, &options.clients, [](const std::string& s) -> Result<int> {
      try {
        return std::stoi(s);
      } catch (...) {
        return InvalidArgument("'" + s + "' is not a client count");
      }
    });
  }, "concurrent clients, comma-separated, for the cells and the lookup rows (default 1,4)");
  flags.AddBytes("working-set", &options.working_set_bytes,
                 "bytes put per cell and target; the soak's bound on live data (default 512MiB)");
  flags.AddInt("get-passes", &options.get_passes, "reads of each key per cell (default 2)");
  flags.AddString("redis-server", "PATH", &options.redis_server,
                  "redis-server binary; empty skips Redis (default redis-server)");
  flags.AddInt("lookups", &options.lookups,
               "Lookup calls of 64-key chains per client count; 0 skips them (default 20000)");
  flags.AddInt("soak-seconds", &options.soak_seconds,
               "run the soak for N seconds instead of the cells; in-process server only (default 0: off)");
  flags.AddInt("soak-clients", &options.soak_clients,
               "soak client threads, every other one on shared memory (default: the largest --clients value)");
  flags.AddBool("json", &json, "print one JSON line with all results last");
  if (int rc = ParseBenchFlags(flags, argc, argv, "bench"); rc >= 0) return rc;
  if (options.soak_seconds > 0) {
    return PrintReport("bench", bench::RunSoak(options, std::cerr), bench::PrintSoakTable, bench::SoakJsonLine, json);
  }
  return PrintReport("bench", bench::RunThroughputBench(options, std::cerr), bench::PrintTable, bench::ToJsonLine,
                     json);
}

int BenchDiskCommand(int argc, char** argv) {
  bench::DiskBenchOptions options;
  bool json = false;
  int write_qd = static_cast<int>(options.write_queue_depth);
  int readers = static_cast<int>(options.readers);
  FlagSet flags("kvtier bench-disk [--dir DIR] [--json]",
                "Measures the NVMe tier: demotion write throughput and random chunk reads (promotions), and\n"
                "fio (ioengine=io_uring, direct=1) with the same block size and queue depth in the same\n"
                "directory, side by side; then the time a restart takes to load an index of many entries.\n"
                "Prints a table, then (with --json) one JSON line as the last line of output.");
  flags.AddString("dir", "DIR", &options.dir, "directory on the device to measure (default ./kvtier-bench-disk)");
  flags.AddBytes("chunk-size", &options.chunk_bytes, "chunk payload size (default 2MiB)");
  flags.AddBytes("bytes", &options.total_bytes, "bytes written and read by each target (default 1GiB)");
  flags.AddInt("write-queue-depth", &write_qd, "io_uring queue depth for writes (default 32)");
  flags.AddInt("readers", &readers, "concurrent chunk reads, the read queue depth (default 8)");
  flags.AddCustom("restart-entries", "N", [&](const std::string& v) {
    try {
      options.restart_entries = std::stoull(v);
    } catch (...) {
      return InvalidArgument("--restart-entries: '" + v + "' is not a number");
    }
    return Status::Ok();
  }, "index entries for the restart timing; 0 skips it (default 100000)");
  flags.AddString("fio", "PATH", &options.fio, "fio binary; empty skips the fio peer (default fio)");
  flags.AddBool("json", &json, "print one JSON line with all results last");
  const auto positive = [&]() -> Status {
    return write_qd > 0 && readers > 0 ? Status::Ok() : InvalidArgument("queue depths must be > 0");
  };
  if (int rc = ParseBenchFlags(flags, argc, argv, "bench-disk", positive); rc >= 0) return rc;
  options.write_queue_depth = static_cast<uint32_t>(write_qd);
  options.readers = static_cast<uint32_t>(readers);
  return PrintReport("bench-disk", bench::RunDiskBench(options, std::cerr), bench::PrintDiskTable, bench::DiskJsonLine,
                json);
}

int BenchCodecCommand(int argc, char** argv) {
  bench::CodecEvalOptions options;
  options.data_dir = bench::DefaultCodecDataDir();
  bool json = false;
  FlagSet flags("kvtier bench-codec [--data-dir DIR] [--json]",
                "Evaluates every codec profile. Real KV: held-out TinyStories passages through the stories260K\n"
                "model; the prefix KV is round-tripped through each profile and the continuation is scored\n"
                "behind it (perplexity change, KL divergence, argmax agreement vs the exact KV). Synthetic KV\n"
                "shaped like a production model: size and relative L2 error per layer. Encode/decode GB/s\n"
                "with one thread and all threads. Prints a table, then (with --json) one JSON line last.");
  flags.AddString("data-dir", "DIR", &options.data_dir,
                  "folder with stories260K.bin, tok512.bin, tinystories_val.txt (default: the source tree's tests/data)");
  flags.AddInt("passages", &options.passages, "evaluation passages (default 64)");
  flags.AddInt("profile-passages", &options.profile_passages, "passages that build the shared profile (default 16)");
  flags.AddInt("prefix-tokens", &options.prefix_tokens, "KV positions round-tripped per passage (default 256)");
  flags.AddInt("continuation-tokens", &options.continuation_tokens, "tokens scored after them (default 64)");
  flags.AddInt("synthetic-layers", &options.synthetic_layers, "synthetic chunk layers (default 32)");
  flags.AddInt("synthetic-heads", &options.synthetic_heads, "synthetic chunk KV heads (default 8)");
  flags.AddInt("synthetic-head-dim", &options.synthetic_head_dim, "synthetic chunk head dim (default 128)");
  flags.AddInt("synthetic-tokens", &options.synthetic_tokens, "synthetic chunk tokens (default 256)");
  flags.AddCustom("min-seconds", "S", [&](const std::string& v) {
    try {
      options.min_seconds = std::stod(v);
    } catch (...) {
      return InvalidArgument("--min-seconds: '" + v + "' is not a number");
    }
    return Status::Ok();
  }, "time per speed measurement (default 0.3)");
  flags.AddInt("threads", &options.threads, "threads for the multi-threaded speeds (default: all cores)");
  flags.AddBool("json", &json, "print one JSON line with all results last");
  if (int rc = ParseBenchFlags(flags, argc, argv, "bench-codec"); rc >= 0) return rc;
  return PrintReport("bench-codec", bench::RunCodecEval(options, std::cerr), bench::PrintCodecTable, bench::CodecJsonLine,
                json);
}

int BenchGpuCommand(int argc, char** argv) {
  bench::GpuBenchOptions options;
  bool json = false;
  int layers = options.layers, kv_heads = options.kv_heads, head_dim = options.head_dim;
  int chunk_tokens = options.chunk_tokens, chunks = options.chunks, block_size = options.block_size;
  int iterations = options.iterations;
  int host_threads = static_cast<int>(options.host_threads);
  FlagSet flags("kvtier bench-gpu [--chunks N] [--json]",
                "Measures the GPU data path on this machine's first GPU, with the limits measured in the same run:\n"
                "pinned host-to-device and device-to-device cudaMemcpy of one transfer's bytes, then against them\n"
                "the paged-KV unpack and pack kernels (all layers per launch), unpack with RoPE re-rotation, int8\n"
                "dequantization and cachegen decoding into fp16 on the GPU, the direct gather of half the blocks\n"
                "from pinned host memory, and a whole chunk load from an in-process server's host tier into a\n"
                "paged cache (straight from its shared arena when the shared-memory path is available). Each row\n"
                "shows GB/s, its limit, the ratio and the target. Fails with the probe's reason on a machine\n"
                "without a GPU. Prints the table, then (with --json) one JSON line.");
  flags.AddInt("layers", &layers, "model layers (default 32)");
  flags.AddInt("kv-heads", &kv_heads, "KV heads (default 8)");
  flags.AddInt("head-dim", &head_dim, "head dimension, even, <= 256 (default 128)");
  flags.AddInt("chunk-tokens", &chunk_tokens, "tokens per chunk (default 256)");
  flags.AddInt("chunks", &chunks, "chunks per transfer (default 8)");
  flags.AddInt("block-size", &block_size, "paged-cache tokens per block (default 16)");
  flags.AddInt("iterations", &iterations, "timed repetitions per row, after one warm-up (default 20)");
  flags.AddInt("host-threads", &host_threads,
               "threads verifying and parsing encoded chunks in the chunk loads; 1: the calling thread alone "
               "(default 0: every core)");
  flags.AddBool("json", &json, "print one JSON line with all results last");
  auto positive = [&]() -> Status {
    for (int v : {layers, kv_heads, head_dim, chunk_tokens, chunks, block_size, iterations}) {
      if (v <= 0) return InvalidArgument("every size and count must be >= 1");
    }
    if (host_threads < 0) return InvalidArgument("--host-threads must be >= 0");
    return Status::Ok();
  };
  if (int rc = ParseBenchFlags(flags, argc, argv, "bench-gpu", positive); rc >= 0) return rc;
  options.layers = static_cast<uint32_t>(layers);
  options.kv_heads = static_cast<uint32_t>(kv_heads);
  options.head_dim = static_cast<uint32_t>(head_dim);
  options.chunk_tokens = static_cast<uint32_t>(chunk_tokens);
  options.chunks = static_cast<uint32_t>(chunks);
  options.block_size = static_cast<uint32_t>(block_size);
  options.iterations = static_cast<uint32_t>(iterations);
  options.host_threads = static_cast<uint32_t>(host_threads);
  return PrintReport("bench-gpu", bench::RunGpuBench(options, std::cerr), bench::PrintGpuTable, bench::GpuJsonLine,
                     json);
}

int BenchClusterCommand(int argc, char** argv) {
  bench::ClusterBenchOptions options;
  bool json = false;
  FlagSet flags("kvtier bench-cluster [--clients N] [--json]",
                "Measures client-side sharding: client threads share one ShardedClient (one replica, gRPC only)\n"
                "over 1, 2 and 3 kvtier servers started in this process, put a working set, get it back (passes),\n"
                "verify every byte and delete it. Per server count: aggregate put and get GB/s, p50/p99 per call,\n"
                "and the smallest and largest share of the keys one server got. Servers and clients share this\n"
                "machine's cores, so the rows show the cost of fan-out and the evenness of placement, not\n"
                "scale-out capacity. Then, without servers, the share of 100000 keys whose first choice changes\n"
                "when N nodes become N+1 or N-1 (N = 2..8), next to the ideal 1/(N+1) and 1/N.\n"
                "Prints the tables, then (with --json) one JSON line as the last line of output.");
  flags.AddCustom("servers", "LIST", [&](const std::string& v) {
    return ParseList<int>(v, &options.servers, [](const std::string& s) -> Result<int> {
      try {
        return std::stoi(s);
      } catch (...) {
        return InvalidArgument("'" + s + "' is not a server count");
      }
    });
  }, "server counts, comma-separated, one cluster each, in this order (default 1,2,3)");
  flags.AddInt("clients", &options.clients, "client threads sharing the ShardedClient (default 4)");
  flags.AddBytes("chunk-size", &options.chunk_bytes, "chunk payload size (default 2MiB)");
  flags.AddBytes("working-set", &options.working_set_bytes, "bytes put per server count (default 256MiB)");
  flags.AddInt("get-passes", &options.get_passes, "reads of each key per server count (default 2)");
  flags.AddBool("json", &json, "print one JSON line with all results last");
  if (int rc = ParseBenchFlags(flags, argc, argv, "bench-cluster"); rc >= 0) return rc;
  return PrintReport("bench-cluster", bench::RunClusterBench(options, std::cerr), bench::PrintClusterTable,
                     bench::ClusterJsonLine, json);
}

}  // namespace kvtier::cli

namespace kvtier::cli {
namespace {

Result<double> ParseNumber(const std::string& s) {
  try {
    size_t used = 0;
    const double v = std::stod(s, &used);
    if (used == s.size()) return v;
  } catch (...) {
  }
  return InvalidArgument("'" + s + "' is not a number");
}

}  // namespace

int BenchReuseCommand(int argc, char** argv) {
  bench::ReuseEvalOptions options;
  options.data_dir = bench::DefaultReuseDataDir();
  bool json = false;
  FlagSet flags("kvtier bench-reuse [--endpoint HOST:PORT] [--plot FILE.png] [--json]",
                "Evaluates chunk reuse beyond prefixes on the real stories260K model through a kvtier server (one\n"
                "in this process unless --endpoint names a running one). Held-out passages are stored computed\n"
                "alone, and as variants computed behind earlier requests' passages with their attention statistics.\n"
                "RAG-style prompts (BOS + 4-6 passages in a new order + a continuation scored teacher-forced) are\n"
                "then prefilled by: full prefill, prefix caching, naive reuse, CacheBlend at each ratio, Cache-Craft\n"
                "at each alpha. Per method: KL divergence against full prefill (mean, p95), perplexity, greedy\n"
                "agreement, share of tokens recomputed, prefill FLOPs relative to full prefill, and the targets.\n"
                "Prints the table, then (with --json) one JSON line last; --plot writes the quality-versus-compute\n"
                "curve with gnuplot.");
  flags.AddString("data-dir", "DIR", &options.data_dir,
                  "folder with stories260K.bin, tok512.bin, tinystories_val.txt (default: the source tree's tests/data)");
  flags.AddString("endpoint", "HOST:PORT", &options.endpoint, "a running kvtier server (default: start one here)");
  flags.AddInt("passages", &options.passages, "passage pool (default 24)");
  flags.AddInt("passage-tokens", &options.passage_tokens, "tokens per passage, one chunk (default 48)");
  flags.AddInt("continuation-tokens", &options.continuation_tokens, "tokens scored after the prompt (default 32)");
  flags.AddInt("seed-prompts", &options.seed_prompts, "earlier requests that leave variants (default 24)");
  flags.AddInt("prompts", &options.prompts, "evaluation prompts (default 256)");
  flags.AddInt("min-passages", &options.min_passages, "passages per prompt, at least (default 4)");
  flags.AddInt("max-passages", &options.max_passages, "passages per prompt, at most (default 6)");
  auto doubles = [](std::vector<double>* out) {
    return [out](const std::string& v) { return ParseList<double>(v, out, ParseNumber); };
  };
  flags.AddCustom("cacheblend-ratios", "LIST", doubles(&options.cacheblend_ratios),
                  "CacheBlend recompute ratios (default 0.05,0.1,0.15,0.2,0.3)");
  flags.AddCustom("seed", "N", [&](const std::string& v) -> Status {
    auto x = ParseNumber(v);
    if (!x.ok() || *x < 0 || *x != double(uint64_t(*x))) return InvalidArgument("--seed: '" + v + "' is not a count");
    options.seed = uint64_t(*x);
    return Status::Ok();
  }, "random seed of the prompt orders (default 7)");
  flags.AddString("cacheblend-metric", "key|value", &options.cacheblend_metric,
                  "which deviation CacheBlend ranks tokens by (default value)");
  flags.AddCustom("cacheblend-check-layers", "LIST", [&](const std::string& v) {
    return ParseList<int>(v, &options.cacheblend_check_layers, [](const std::string& s) -> Result<int> {
      auto x = ParseNumber(s);
      if (!x.ok() || *x != double(int(*x))) return InvalidArgument("'" + s + "' is not a layer");
      return int(*x);
    });
  }, "CacheBlend check layers, ascending (default 1,2)");
  flags.AddCustom("cacheblend-taper", "X", [&](const std::string& v) -> Status {
    auto x = ParseNumber(v);
    if (!x.ok()) return x.status();
    options.cacheblend_taper = *x;
    return Status::Ok();
  }, "gradual filtering: check i of k keeps ratio x X^(k-1-i) (default 2)");
  flags.AddCustom("cachecraft-alphas", "LIST", doubles(&options.cachecraft_alphas),
                  "Cache-Craft alphas (default 0.25,0.5,0.6,0.7,0.8,1,1.5,2)");
  flags.AddCustom("cachecraft-default-ci", "X", [&](const std::string& v) -> Status {
    auto x = ParseNumber(v);
    if (!x.ok()) return x.status();
    options.cachecraft_default_ci = *x;
    return Status::Ok();
  }, "context impact assumed for variants computed alone (default 0.5)");
  flags.AddString("plot", "FILE.png", &options.plot_path, "write the quality-versus-compute plot (needs gnuplot)");
  flags.AddBool("json", &json, "print one JSON line with all results last");
  if (int rc = ParseBenchFlags(flags, argc, argv, "bench-reuse"); rc >= 0) return rc;
  auto report = bench::RunReuseEval(options, std::cerr);
  if (report.ok() && !options.plot_path.empty()) {
    if (Status s = bench::PlotReuse(*report, options.plot_path); !s.ok()) {
      std::cerr << "kvtier bench-reuse: " << s.ToString() << "\n";
      return 1;
    }
    std::cerr << "kvtier bench-reuse: plot written to " << options.plot_path << "\n";
  }
  return PrintReport("bench-reuse", report, bench::PrintReuseTable, bench::ReuseJsonLine, json);
}

}  // namespace kvtier::cli
