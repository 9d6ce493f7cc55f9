#include "kvtier/bench/cluster.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <span>

#include "bench_common.h"
#include "kvtier/client/sharded_client.h"
#include "kvtier/kvstore/server.h"
#include "shard/rendezvous.h"

namespace kvtier::bench {
namespace {

constexpr char kClusterNamespace[] = "kvtier-bench-cluster";

// Servers of one cluster, in this process; each holds its 1/N of the working set with room to spare.
Result<std::vector<std::unique_ptr<Server>>> StartServers(const ClusterBenchOptions& o, int n) {
  const uint64_t share = o.working_set_bytes / static_cast<uint64_t>(n);
  std::vector<std::unique_ptr<Server>> servers;
  for (int i = 0; i < n; ++i) {
    ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "";
    config.store.host_capacity_bytes = share + share / 4 + (64ull << 20);
    config.store.host_prefault = true;
    config.store.max_chunk_bytes = std::max<uint64_t>(config.store.max_chunk_bytes, o.chunk_bytes);
    auto server = Server::Start(config);
    if (!server.ok()) return server.status();
    servers.push_back(std::move(server).value());
  }
  return servers;
}

Result<std::unique_ptr<ShardedClient>> ConnectSharded(const ClusterBenchOptions& o,
                                                      const std::vector<std::unique_ptr<Server>>& servers) {
  ShardedClientOptions options;
  options.client.name_space = kClusterNamespace;
  options.client.fingerprint = BenchFingerprint(o.chunk_bytes);
  options.client.max_attempts = 1;
  options.client.async_threads = 1;
  options.client.local_path = LocalPathMode::kOff;
  for (const auto& s : servers) options.endpoints.push_back(s->address());
  options.replicas = 1;
  return ShardedClient::Connect(std::move(options));
}

// One get (a miss) to every node, so that its connection exists before timing.
Status Warm(ShardedClient& client, std::vector<std::byte>& dest) {
  for (const std::string& node : client.nodes()) {
    for (uint64_t j = 0;; ++j) {
      const ChunkKey key{0xfeedfeedull, j};
      if (client.PlacementOf(key).front() != node) continue;
      auto miss = client.Get(key, dest);
      if (!miss.ok()) return miss.status();
      if (miss->found) return Internal("warm-up key was present on " + node);
      break;
    }
  }
  return Status::Ok();
}

uint64_t StampOf(const std::vector<std::byte>& bytes) {
  uint64_t v = 0;
  std::memcpy(&v, bytes.data(), sizeof(v));
  return v;
}

// Smallest and largest share of the keys whose first choice is one node.
std::pair<double, double> Shares(const ShardedClient& client, uint64_t keys,
                                 const std::function<ChunkKey(uint64_t)>& key_of) {
  std::map<std::string, uint64_t> count;
  for (const std::string& node : client.nodes()) count[node] = 0;
  for (uint64_t i = 0; i < keys; ++i) ++count[client.PlacementOf(key_of(i)).front()];
  uint64_t lo = keys, hi = 0;
  for (const auto& [node, c] : count) {
    lo = std::min(lo, c);
    hi = std::max(hi, c);
  }
  return {static_cast<double>(lo) / static_cast<double>(keys), static_cast<double>(hi) / static_cast<double>(keys)};
}

ClusterRow ToRow(int servers, const BenchRow& r, std::pair<double, double> shares) {
  return {servers, r.op, r.clients, r.chunk_bytes, r.ops, r.seconds, r.gbps, r.p50_us, r.p99_us, shares.first,
          shares.second};
}

// The working set's passes over one cluster. Key i of round r is {tag | n << 8 | r, i}; each payload is the
// same random bytes with i stamped in its first 8 bytes.
struct Passes {
  ShardedClient& client;
  Buffers& buf;
  int n, clients;
  uint64_t chunk, keys;
  std::vector<uint32_t> tokens;

  ChunkKey KeyOf(uint32_t round, uint64_t i) const {
    return {0xc105'7e40'0000'0000ull | static_cast<uint64_t>(n) << 8 | round, i};
  }

  Result<CellResult> Put(uint32_t round) {
    return RunParallel(clients, keys, [&](int t, uint64_t i) -> Status {
      std::memcpy(buf.payload[t].data(), &i, sizeof(i));
      auto r = client.Put(KeyOf(round, i), tokens, buf.payload[t]);
      if (!r.ok()) return r.status();
      if (r->already_present) return Internal("bench key was already present");
      return r->stored_on == 1 ? Status::Ok() : Unavailable("a put was not stored (its server is down)");
    });
  }

  // Each get checks the stamp (the right key); with `all_bytes`, every byte.
  Result<CellResult> Get(uint32_t round, int passes, bool all_bytes) {
    return RunParallel(clients, keys * static_cast<uint64_t>(passes), [&](int t, uint64_t i) -> Status {
      auto r = client.Get(KeyOf(round, i % keys), buf.dest[t]);
      if (!r.ok()) return r.status();
      if (!r->found || r->bytes != chunk) return Internal("missed a bench key");
      const bool same = StampOf(buf.dest[t]) == i % keys &&
                        (!all_bytes || std::memcmp(buf.dest[t].data() + 8, buf.payload[t].data() + 8, chunk - 8) == 0);
      return same ? Status::Ok() : DataLoss("a get returned different bytes than were put");
    });
  }

  Status Delete(uint32_t round) {
    std::vector<ChunkKey> batch;
    for (uint64_t i = 0; i < keys; ++i) {
      batch.push_back(KeyOf(round, i));
      if (batch.size() == 512 || i + 1 == keys) {
        auto d = client.Delete(batch);
        if (!d.ok()) return d.status();
        if (*d != batch.size()) return Internal("a delete did not find every bench key");
        batch.clear();
      }
    }
    return Status::Ok();
  }
};

// Put, get (timed), verify and delete the working set on a cluster of `n` servers.
Status BenchCluster(const ClusterBenchOptions& o, int n, Buffers& buf, std::vector<ClusterRow>* out,
                    std::ostream& progress) {
  progress << n << " server(s): starting" << std::flush;
  auto started = StartServers(o, n);
  if (!started.ok()) return started.status();
  std::vector<std::unique_ptr<Server>> servers = std::move(started).value();
  auto connected = ConnectSharded(o, servers);
  if (!connected.ok()) return connected.status();
  std::unique_ptr<ShardedClient> client = std::move(connected).value();
  KVTIER_RETURN_IF_ERROR(Warm(*client, buf.dest[0]));
  Passes p{*client, buf, n, o.clients, o.chunk_bytes, o.working_set_bytes / o.chunk_bytes, {}};
  p.tokens.resize(BenchFingerprint(p.chunk).chunk_tokens);
  std::iota(p.tokens.begin(), p.tokens.end(), 0u);
  const auto shares = Shares(*client, p.keys, [&](uint64_t i) { return p.KeyOf(1, i); });
  progress << ", " << Size(p.chunk) << " x " << p.keys << " keys, " << p.clients << " client(s)" << std::flush;

  // Untimed round 0 under other keys: the heap that gRPC messages use on both sides gets faulted in before
  // timing, so that the first cluster does not pay it alone.
  auto warm_put = p.Put(0);
  if (!warm_put.ok()) return warm_put.status();
  auto warm_get = p.Get(0, 1, /*all_bytes=*/false);
  if (!warm_get.ok()) return warm_get.status();
  KVTIER_RETURN_IF_ERROR(p.Delete(0));

  std::vector<ClusterRow> rows;
  auto put = p.Put(1);
  if (!put.ok()) return put.status();
  rows.push_back(ToRow(n, MakeRow("kvtier", "put", p.chunk, p.clients, std::move(put).value()), shares));
  auto get = p.Get(1, o.get_passes, /*all_bytes=*/false);
  if (!get.ok()) return get.status();
  rows.push_back(ToRow(n, MakeRow("kvtier", "get", p.chunk, p.clients, std::move(get).value()), shares));
  auto verify = p.Get(1, 1, /*all_bytes=*/true);  // untimed
  if (!verify.ok()) return verify.status();
  KVTIER_RETURN_IF_ERROR(p.Delete(1));
  client.reset();  // before the servers stop
  servers.clear();
  out->insert(out->end(), rows.begin(), rows.end());
  progress << " done\n";
  return Status::Ok();
}

}  // namespace

Status ClusterBenchOptions::Validate() const {
  if (servers.empty()) return InvalidArgument("need at least one server count");
  for (int n : servers) {
    if (n < 1 || n > 64) return InvalidArgument("server counts must be in [1, 64]");
  }
  if (clients < 1 || clients > 256) return InvalidArgument("clients must be in [1, 256]");
  if (chunk_bytes < kBytesPerToken || chunk_bytes % kBytesPerToken != 0 || chunk_bytes / kBytesPerToken > 65536) {
    return InvalidArgument("the chunk size must be a multiple of 4 KiB up to 256 MiB");
  }
  if (chunk_bytes > working_set_bytes) return InvalidArgument("working set is smaller than a chunk");
  if (get_passes < 1) return InvalidArgument("get passes must be >= 1");
  if (moved_max_nodes < 2 || moved_max_nodes > 64) return InvalidArgument("moved max nodes must be in [2, 64]");
  return Status::Ok();
}

std::vector<MovedRow> MeasureKeysMoved(uint64_t keys, int max_nodes) {
  std::vector<std::string> names;
  for (int i = 0; i <= max_nodes; ++i) names.push_back("node-" + std::to_string(i) + ":7070");
  // moved_up[N]: keys whose first choice differs between the first N and the first N+1 names.
  std::vector<uint64_t> moved_up(max_nodes + 1, 0);
  std::vector<uint32_t> first(max_nodes + 2), order;
  uint64_t x = 0x6b65797321ull;
  for (uint64_t k = 0; k < keys; ++k) {
    ChunkKey key;
    for (uint64_t* word : {&key.hi, &key.lo}) {  // splitmix64: keys like content hashes
      uint64_t z = (x += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      *word = z ^ (z >> 31);
    }
    for (int m = 1; m <= max_nodes + 1; ++m) {
      RankNodes(std::span<const std::string>(names.data(), static_cast<size_t>(m)), key, &order);
      first[m] = order.front();  // an index into the shared prefix of names: the same node in every list
    }
    for (int n = 1; n <= max_nodes; ++n) moved_up[n] += first[n] != first[n + 1];
  }
  std::vector<MovedRow> rows;
  const double total = static_cast<double>(keys);
  for (int n = 2; n <= max_nodes; ++n) {
    rows.push_back({n, n + 1, static_cast<double>(moved_up[n]) / total, 1.0 / (n + 1)});
    rows.push_back({n, n - 1, static_cast<double>(moved_up[n - 1]) / total, 1.0 / n});
  }
  return rows;
}

Result<ClusterReport> RunClusterBench(const ClusterBenchOptions& options, std::ostream& progress) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  ClusterReport report;
  Buffers buf(options.clients, options.chunk_bytes);
  for (int n : options.servers) KVTIER_RETURN_IF_ERROR(BenchCluster(options, n, buf, &report.rows, progress));
  if (options.moved_keys > 0) {
    progress << "keys moved: " << options.moved_keys << " keys, 2.." << options.moved_max_nodes << " nodes"
             << std::flush;
    report.moved = MeasureKeysMoved(options.moved_keys, options.moved_max_nodes);
    progress << " done\n";
  }
  return report;
}

}  // namespace kvtier::bench
