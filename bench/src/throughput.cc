#include "kvtier/bench/throughput.h"

#include <algorithm>
#include <functional>
#include <numeric>

#include "bench_common.h"
#include "redis_peer.h"

namespace kvtier::bench {
namespace {

// How one kvtier target reaches the server: "kvtier" over gRPC only, "kvtier-shm" through shared memory.
struct KvtierTarget {
  std::string name;
  std::string name_space;
  LocalPathMode mode;
  uint64_t key_tag;  // low bits of every key's hi word
};

const KvtierTarget kGrpc{"kvtier", kGrpcNamespace, LocalPathMode::kOff, 0xbe7c};
const KvtierTarget kShm{"kvtier-shm", kShmNamespace, LocalPathMode::kRequire, 0x5e3};

LocalPathStats SumLocalStats(const std::vector<std::unique_ptr<Client>>& conns) {
  LocalPathStats sum;
  for (const auto& c : conns) {
    const LocalPathStats s = c->local_stats();
    sum.local_gets += s.local_gets;
    sum.local_puts += s.local_puts;
    sum.fallbacks += s.fallbacks;
    sum.expired_leases += s.expired_leases;
  }
  return sum;
}

// The shared-memory rows must not have gone over gRPC: every get and put of the cell took the local path.
Status CheckLocalPath(const LocalPathStats& before, const LocalPathStats& after, uint64_t gets, uint64_t puts) {
  const uint64_t local_gets = after.local_gets - before.local_gets;
  const uint64_t local_puts = after.local_puts - before.local_puts;
  const uint64_t fallbacks = after.fallbacks - before.fallbacks;
  if (local_gets > 0 && local_gets == gets && local_puts == puts && fallbacks == 0) return Status::Ok();
  return Internal("kvtier-shm did not stay on shared memory: " + std::to_string(local_gets) + " of " +
                  std::to_string(gets) + " gets and " + std::to_string(local_puts) + " of " + std::to_string(puts) +
                  " puts were local, " + std::to_string(fallbacks) + " fell back to gRPC");
}

Status DeleteKeys(Client& client, uint64_t keys, const std::function<ChunkKey(uint64_t)>& key_of) {
  std::vector<ChunkKey> batch;
  for (uint64_t i = 0; i < keys; ++i) {
    batch.push_back(key_of(i));
    if (batch.size() == 512 || i + 1 == keys) {
      auto d = client.Delete(batch);
      if (!d.ok()) return d.status();
      batch.clear();
    }
  }
  return Status::Ok();
}

// Connects `clients` clients and makes one call each (a miss), so that connections, and the
// shared-memory mapping and put window, exist before timing. FAILED_PRECONDITION: no shared memory.
Result<std::vector<std::unique_ptr<Client>>> ConnectWarm(const std::string& endpoint, const KvtierTarget& target,
                                                        uint64_t chunk, int clients, std::vector<std::byte>& dest) {
  std::vector<std::unique_ptr<Client>> conns;
  for (int t = 0; t < clients; ++t) {
    auto c = ConnectBenchClient(endpoint, target.name_space, chunk, target.mode);
    if (!c.ok()) return c.status();
    auto miss = (*c)->Get(ChunkKey{~0ull, ~0ull}, dest);
    if (!miss.ok()) return miss.status();
    conns.push_back(std::move(c).value());
  }
  return conns;
}

Status BenchKvtier(const std::string& endpoint, const KvtierTarget& target, uint64_t chunk, int clients,
                   uint64_t keys, int passes, uint32_t cell_id, std::vector<BenchRow>* out) {
  std::vector<BenchRow> rows;  // appended to `out` only when the whole cell succeeded
  Buffers buf(clients, chunk);
  auto connected = ConnectWarm(endpoint, target, chunk, clients, buf.dest[0]);
  if (!connected.ok()) return connected.status();
  std::vector<std::unique_ptr<Client>> conns = std::move(connected).value();
  const LocalPathStats before = SumLocalStats(conns);
  std::vector<uint32_t> tokens(BenchFingerprint(chunk).chunk_tokens);
  std::iota(tokens.begin(), tokens.end(), 0u);
  auto key_of = [&](uint64_t i) { return ChunkKey{uint64_t{cell_id} << 32 | target.key_tag, i}; };

  auto put = RunParallel(clients, keys, [&](int t, uint64_t i) -> Status {
    auto r = conns[t]->Put(key_of(i), tokens, buf.payload[t]);
    if (!r.ok()) return r.status();
    return r->already_present ? Internal("bench key was already present") : Status::Ok();
  });
  if (!put.ok()) return put.status();
  rows.push_back(MakeRow(target.name, "put", chunk, clients, std::move(put).value()));

  auto get = RunParallel(clients, keys * passes, [&](int t, uint64_t i) -> Status {
    auto r = conns[t]->Get(key_of(i % keys), buf.dest[t]);
    if (!r.ok()) return r.status();
    return r->found && r->bytes == chunk ? Status::Ok() : Internal(target.name + " missed a bench key");
  });
  if (!get.ok()) return get.status();
  rows.push_back(MakeRow(target.name, "get", chunk, clients, std::move(get).value()));

  // Every thread put the same bytes, so any destination must equal the payload.
  if (buf.dest[0] != buf.payload[0]) return DataLoss(target.name + " returned different bytes than were put");
  if (target.mode == LocalPathMode::kRequire) {
    KVTIER_RETURN_IF_ERROR(CheckLocalPath(before, SumLocalStats(conns), keys * passes, keys));
  }
  KVTIER_RETURN_IF_ERROR(DeleteKeys(*conns[0], keys, key_of));
  out->insert(out->end(), rows.begin(), rows.end());
  return Status::Ok();
}

// Where the rows of a run go.
struct Targets {
  std::string endpoint;                    // kvtier
  std::unique_ptr<InProcessServer> local;  // null with an external server
  bool shm = true;                         // an external server: tried, and skipped on FAILED_PRECONDITION
  std::unique_ptr<RedisPeer> redis;        // null: no Redis rows
};

// One cell: kvtier, kvtier-shm and Redis rows for one chunk size and client count.
Status RunCell(const BenchOptions& options, uint64_t chunk, int clients, uint32_t cell, Targets& targets,
               std::vector<BenchRow>* rows, std::ostream& progress) {
  const uint64_t keys = options.working_set_bytes / chunk;
  const int passes = options.get_passes;
  progress << "cell " << cell << ": " << Size(chunk) << " x " << keys << " keys, " << clients << " client(s)"
           << std::flush;
  KVTIER_RETURN_IF_ERROR(BenchKvtier(targets.endpoint, kGrpc, chunk, clients, keys, passes, cell, rows));
  if (targets.shm) {
    Status s = BenchKvtier(targets.endpoint, kShm, chunk, clients, keys, passes, cell, rows);
    if (s.code() == StatusCode::kFailedPrecondition && targets.local == nullptr) {
      progress << " (kvtier-shm skipped: " << s.ToString() << ")";
      targets.shm = false;
    } else if (!s.ok()) {
      return s;
    }
  }
  if (targets.redis) KVTIER_RETURN_IF_ERROR(BenchRedis(targets.redis->port(), chunk, clients, keys, passes, rows));
  progress << " done\n";
  return Status::Ok();
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
  if (lookups < 0) return InvalidArgument("lookups must be >= 0");
  if (soak_seconds < 0) return InvalidArgument("soak seconds must be >= 0");
  if (soak_clients < 0 || soak_clients > 256) return InvalidArgument("soak clients must be in [0, 256]");
  return Status::Ok();
}

Result<std::vector<BenchRow>> RunThroughputBench(const BenchOptions& options, std::ostream& progress) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  Targets targets;
  targets.endpoint = options.server;
  if (targets.endpoint.empty()) {
    auto server = StartBenchServer(options, progress);
    if (!server.ok()) return server.status();
    targets.local = std::move(server).value();
    targets.endpoint = targets.local->address();
    targets.shm = targets.local->shm();
  }
  if (!options.redis_server.empty()) {
    auto peer = RedisPeer::Start(options.redis_server);
    if (!peer.ok()) return peer.status();
    targets.redis = std::move(peer).value();
    progress << "redis: " << options.redis_server << " " << targets.redis->version() << " on 127.0.0.1:"
             << targets.redis->port() << " (persistence off)\n";
  }
  // The memcpy peer's source: the working set, allocated and touched once.
  std::vector<std::byte> copy_source(options.working_set_bytes);
  FillRandom(copy_source, 7);
  std::vector<BenchRow> rows;
  uint32_t cell = 0;
  for (uint64_t chunk : options.chunk_bytes) {
    KVTIER_RETURN_IF_ERROR(BenchMemcpy(copy_source, chunk, &rows));
    for (int clients : options.clients) {
      KVTIER_RETURN_IF_ERROR(RunCell(options, chunk, clients, ++cell, targets, &rows, progress));
    }
  }
  if (options.lookups > 0) {
    KVTIER_RETURN_IF_ERROR(BenchLookups(targets.endpoint, options, targets.local != nullptr, &rows, progress));
  }
  return rows;
}

}  // namespace kvtier::bench
