#include "kvtier/bench/throughput.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "kvtier/client/client.h"
#include "kvtier/kvstore/server.h"
#include "redis_peer.h"

namespace kvtier::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kBytesPerToken = 4096;  // 1 layer x 2 x 8 heads x 128 dims x fp16

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

// One op's latencies per thread, gathered after the run.
struct ThreadLog {
  std::vector<double> latency_us;
  Status error;
};

struct CellResult {
  double seconds = 0;
  uint64_t ops = 0;
  std::vector<double> latency_us;
};

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

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
      for (uint64_t i = t; i < total && log.error.ok(); i += threads) {
        const auto t0 = Clock::now();
        log.error = op(t, i);
        log.latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    });
  }
  start.arrive_and_wait();
  const auto begin = Clock::now();
  for (auto& w : workers) w.join();
  CellResult out;
  out.seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  out.ops = total;
  for (auto& log : logs) {
    if (!log.error.ok()) return log.error;
    out.latency_us.insert(out.latency_us.end(), log.latency_us.begin(), log.latency_us.end());
  }
  return out;
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

// Buffers are allocated and touched once, outside the timed region.
struct Buffers {
  std::vector<std::vector<std::byte>> payload;  // per thread: what is put
  std::vector<std::vector<std::byte>> dest;     // per thread: where gets land
  Buffers(int threads, uint64_t bytes) {
    std::mt19937_64 rng(42);
    for (int t = 0; t < threads; ++t) {
      payload.emplace_back(bytes);
      for (auto& b : payload.back()) b = static_cast<std::byte>(rng());
      dest.emplace_back(bytes, std::byte{0});
    }
  }
};

Status BenchKvtier(const std::string& endpoint, uint64_t chunk, int clients, uint64_t keys, int passes,
                   uint32_t cell_id, std::vector<BenchRow>* rows) {
  std::vector<std::unique_ptr<Client>> conns;
  ClientOptions options;
  options.endpoint = endpoint;
  options.name_space = "kvtier-bench";
  options.fingerprint = BenchFingerprint(chunk);
  options.max_attempts = 1;
  options.async_threads = 1;
  for (int t = 0; t < clients; ++t) {
    auto c = Client::Connect(options);
    if (!c.ok()) return c.status();
    conns.push_back(std::move(c).value());
  }
  std::vector<uint32_t> tokens(options.fingerprint.chunk_tokens);
  std::iota(tokens.begin(), tokens.end(), 0u);
  Buffers buf(clients, chunk);
  auto key_of = [cell_id](uint64_t i) { return ChunkKey{uint64_t{cell_id} << 32 | 0xbe7c, i}; };

  auto put = RunParallel(clients, keys, [&](int t, uint64_t i) -> Status {
    auto r = conns[t]->Put(key_of(i), tokens, buf.payload[t]);
    if (!r.ok()) return r.status();
    return r->already_present ? Internal("bench key was already present") : Status::Ok();
  });
  if (!put.ok()) return put.status();
  rows->push_back(MakeRow("kvtier", "put", chunk, clients, std::move(put).value()));

  auto get = RunParallel(clients, keys * passes, [&](int t, uint64_t i) -> Status {
    auto r = conns[t]->Get(key_of(i % keys), buf.dest[t]);
    if (!r.ok()) return r.status();
    return r->found && r->bytes == chunk ? Status::Ok() : Internal("kvtier missed a bench key");
  });
  if (!get.ok()) return get.status();
  rows->push_back(MakeRow("kvtier", "get", chunk, clients, std::move(get).value()));

  // Every thread put the same bytes, so any destination must equal the payload.
  if (buf.dest[0] != buf.payload[0]) return DataLoss("kvtier returned different bytes than were put");
  std::vector<ChunkKey> batch;
  for (uint64_t i = 0; i < keys; ++i) {
    batch.push_back(key_of(i));
    if (batch.size() == 512 || i + 1 == keys) {
      auto d = conns[0]->Delete(batch);
      if (!d.ok()) return d.status();
      batch.clear();
    }
  }
  return Status::Ok();
}

struct RedisConn {
  redisContext* c = nullptr;
  ~RedisConn() {
    if (c != nullptr) redisFree(c);
  }
};

Status RedisCall(redisContext* c, int argc, const char** argv, const size_t* lens, std::byte* dest, size_t expect) {
  auto* reply = static_cast<redisReply*>(redisCommandArgv(c, argc, argv, lens));
  if (reply == nullptr) return Unavailable(std::string("redis: ") + c->errstr);
  Status s;
  if (reply->type == REDIS_REPLY_ERROR) s = Internal(std::string("redis: ") + reply->str);
  else if (dest != nullptr) {
    if (reply->type != REDIS_REPLY_STRING || static_cast<size_t>(reply->len) != expect) {
      s = Internal("redis missed a bench key");
    } else {
      std::memcpy(dest, reply->str, expect);  // a worker needs the bytes in its own buffer too
    }
  }
  freeReplyObject(reply);
  return s;
}

Status BenchRedis(int port, uint64_t chunk, int clients, uint64_t keys, int passes, std::vector<BenchRow>* rows) {
  std::vector<RedisConn> conns(clients);
  for (auto& conn : conns) {
    conn.c = redisConnect("127.0.0.1", port);
    if (conn.c == nullptr || conn.c->err != 0) return Unavailable("cannot connect to redis");
  }
  Buffers buf(clients, chunk);
  auto key_of = [](uint64_t i) { return "bench:" + std::to_string(i); };

  auto put = RunParallel(clients, keys, [&](int t, uint64_t i) -> Status {
    const std::string key = key_of(i);
    const char* argv[] = {"SET", key.data(), reinterpret_cast<const char*>(buf.payload[t].data())};
    const size_t lens[] = {3, key.size(), chunk};
    return RedisCall(conns[t].c, 3, argv, lens, nullptr, 0);
  });
  if (!put.ok()) return put.status();
  rows->push_back(MakeRow("redis", "put", chunk, clients, std::move(put).value()));

  auto get = RunParallel(clients, keys * passes, [&](int t, uint64_t i) -> Status {
    const std::string key = key_of(i % keys);
    const char* argv[] = {"GET", key.data()};
    const size_t lens[] = {3, key.size()};
    return RedisCall(conns[t].c, 2, argv, lens, buf.dest[t].data(), chunk);
  });
  if (!get.ok()) return get.status();
  rows->push_back(MakeRow("redis", "get", chunk, clients, std::move(get).value()));
  if (buf.dest[0] != buf.payload[0]) return DataLoss("redis returned different bytes than were put");

  const char* flush[] = {"FLUSHALL"};
  const size_t flush_len[] = {8};
  return RedisCall(conns[0].c, 1, flush, flush_len, nullptr, 0);
}

std::string Size(uint64_t bytes) {
  if (bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes >> 10) + " KiB";
}

}  // namespace

Status BenchOptions::Validate() const {
  if (chunk_bytes.empty() || clients.empty()) return InvalidArgument("need at least one chunk size and client count");
  for (uint64_t c : chunk_bytes) {
    if (c == 0 || c % kBytesPerToken != 0 || c / kBytesPerToken > 65536) {
      return InvalidArgument("chunk sizes must be multiples of 4 KiB up to 256 MiB");
    }
    if (c > working_set_bytes) return InvalidArgument("working set is smaller than a chunk");
  }
  for (int n : clients) {
    if (n < 1 || n > 256) return InvalidArgument("client counts must be in [1, 256]");
  }
  if (get_passes < 1) return InvalidArgument("get passes must be >= 1");
  return Status::Ok();
}

Result<std::vector<BenchRow>> RunThroughputBench(const BenchOptions& options, std::ostream& progress) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Server> local;
  std::string endpoint = options.server;
  if (endpoint.empty()) {
    ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "";
    config.store.host_capacity_bytes = options.working_set_bytes + options.working_set_bytes / 4 + (64ull << 20);
    config.store.max_chunk_bytes = std::max<uint64_t>(config.store.max_chunk_bytes,
                                                      *std::max_element(options.chunk_bytes.begin(),
                                                                        options.chunk_bytes.end()));
    auto server = Server::Start(config);
    if (!server.ok()) return server.status();
    local = std::move(server).value();
    endpoint = local->address();
    progress << "kvtier: in-process server on " << endpoint << "\n";
  }
  std::unique_ptr<RedisPeer> redis;
  if (!options.redis_server.empty()) {
    auto peer = RedisPeer::Start(options.redis_server);
    if (!peer.ok()) return peer.status();
    redis = std::move(peer).value();
    progress << "redis: " << options.redis_server << " " << redis->version() << " on 127.0.0.1:" << redis->port()
             << " (persistence off)\n";
  }
  std::vector<BenchRow> rows;
  uint32_t cell = 0;
  for (uint64_t chunk : options.chunk_bytes) {
    const uint64_t keys = options.working_set_bytes / chunk;
    for (int clients : options.clients) {
      ++cell;
      progress << "cell " << cell << ": " << Size(chunk) << " x " << keys << " keys, " << clients << " client(s)"
               << std::flush;
      KVTIER_RETURN_IF_ERROR(BenchKvtier(endpoint, chunk, clients, keys, options.get_passes, cell, &rows));
      if (redis) KVTIER_RETURN_IF_ERROR(BenchRedis(redis->port(), chunk, clients, keys, options.get_passes, &rows));
      progress << " done\n";
    }
  }
  return rows;
}

namespace {

const BenchRow* Find(const std::vector<BenchRow>& rows, const std::string& target, const BenchRow& like) {
  for (const BenchRow& r : rows) {
    if (r.target == target && r.op == like.op && r.chunk_bytes == like.chunk_bytes && r.clients == like.clients) {
      return &r;
    }
  }
  return nullptr;
}

}  // namespace

void PrintTable(const std::vector<BenchRow>& rows, std::ostream& out) {
  out << std::left << std::setw(5) << "op" << std::setw(9) << "chunk" << std::setw(9) << "clients" << std::right
      << std::setw(13) << "kvtier GB/s" << std::setw(12) << "redis GB/s" << std::setw(8) << "ratio" << std::setw(20)
      << "kvtier p50/p99 us" << std::setw(20) << "redis p50/p99 us" << "\n";
  out << std::fixed;
  for (const BenchRow& k : rows) {
    if (k.target != "kvtier") continue;
    const BenchRow* r = Find(rows, "redis", k);
    std::ostringstream kl, rl;
    kl << std::setprecision(0) << std::fixed << k.p50_us << "/" << k.p99_us;
    if (r != nullptr) rl << std::setprecision(0) << std::fixed << r->p50_us << "/" << r->p99_us;
    out << std::left << std::setw(5) << k.op << std::setw(9) << Size(k.chunk_bytes) << std::setw(9) << k.clients
        << std::right << std::setprecision(2) << std::setw(13) << k.gbps << std::setw(12)
        << (r ? r->gbps : 0.0) << std::setw(8) << (r && r->gbps > 0 ? k.gbps / r->gbps : 0.0) << std::setw(20)
        << kl.str() << std::setw(20) << (r ? rl.str() : "-") << "\n";
  }
}

std::string ToJsonLine(const std::vector<BenchRow>& rows) {
  std::ostringstream out;
  out << std::setprecision(6);
  out << "{\"bench\":\"throughput\",\"results\":[";
  for (size_t i = 0; i < rows.size(); ++i) {
    const BenchRow& r = rows[i];
    out << (i ? "," : "") << "{\"target\":\"" << r.target << "\",\"op\":\"" << r.op << "\",\"chunk_bytes\":"
        << r.chunk_bytes << ",\"clients\":" << r.clients << ",\"ops\":" << r.ops << ",\"seconds\":" << r.seconds
        << ",\"gbps\":" << r.gbps << ",\"p50_us\":" << r.p50_us << ",\"p99_us\":" << r.p99_us << "}";
  }
  out << "],\"ratios\":[";
  bool first = true;
  for (const BenchRow& k : rows) {
    if (k.target != "kvtier") continue;
    const BenchRow* r = Find(rows, "redis", k);
    if (r == nullptr || r->gbps <= 0 || r->p99_us <= 0) continue;
    out << (first ? "" : ",") << "{\"op\":\"" << k.op << "\",\"chunk_bytes\":" << k.chunk_bytes
        << ",\"clients\":" << k.clients << ",\"gbps_ratio\":" << k.gbps / r->gbps
        << ",\"p99_ratio\":" << k.p99_us / r->p99_us << "}";
    first = false;
  }
  out << "]}";
  return out.str();
}

}  // namespace kvtier::bench
