#include "kvtier/client/sharded_client.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>

#include "shard/node_set.h"
#include "shard/rendezvous.h"
#include "thread_pool.h"

namespace kvtier {

Status ShardedClientOptions::Validate() const {
  if (endpoints.empty() == dns_name.empty()) {
    return InvalidArgument("ShardedClientOptions: set exactly one of endpoints and dns_name");
  }
  if (replicas == 0) return InvalidArgument("ShardedClientOptions.replicas must be >= 1");
  if (failures_to_open == 0) return InvalidArgument("ShardedClientOptions.failures_to_open must be >= 1");
  if (initial_backoff.count() <= 0 || max_backoff < initial_backoff) {
    return InvalidArgument("ShardedClientOptions: need 0 < initial_backoff <= max_backoff");
  }
  if (resolve_interval.count() <= 0) return InvalidArgument("ShardedClientOptions.resolve_interval must be > 0");
  if (parallelism == 0) return InvalidArgument("ShardedClientOptions.parallelism must be >= 1");
  ClientOptions probe = client;
  probe.endpoint = "placeholder:1";
  return probe.Validate();
}

namespace {

Result<uint32_t> EnvNumber(const char* name, uint32_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX) {
    return InvalidArgument(std::string(name) + "='" + text + "' is not a positive integer");
  }
  return static_cast<uint32_t>(v);
}

}  // namespace

Result<ShardedClientOptions> ShardedClientOptions::FromEnvironment(ShardedClientOptions base) {
  if (const char* endpoints = std::getenv("KVTIER_ENDPOINTS"); endpoints != nullptr && *endpoints != '\0') {
    base.endpoints.clear();
    std::string list = endpoints;
    for (size_t start = 0; start <= list.size();) {
      const size_t comma = std::min(list.find(',', start), list.size());
      if (comma > start) base.endpoints.push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
    base.dns_name.clear();
  }
  if (const char* dns = std::getenv("KVTIER_DNS_NAME"); dns != nullptr && *dns != '\0') {
    if (!base.endpoints.empty() && std::getenv("KVTIER_ENDPOINTS") != nullptr) {
      return InvalidArgument("set one of KVTIER_ENDPOINTS and KVTIER_DNS_NAME, not both");
    }
    base.dns_name = dns;
    base.endpoints.clear();
  }
  auto replicas = EnvNumber("KVTIER_REPLICAS", base.replicas);
  if (!replicas.ok()) return replicas.status();
  base.replicas = *replicas;
  auto interval = EnvNumber("KVTIER_RESOLVE_INTERVAL_MS", static_cast<uint32_t>(base.resolve_interval.count()));
  if (!interval.ok()) return interval.status();
  base.resolve_interval = std::chrono::milliseconds(*interval);
  return base;
}

struct ShardedClient::Impl {
  explicit Impl(ShardedClientOptions o)
      : options(std::move(o)),
        health{options.failures_to_open, options.initial_backoff, options.max_backoff},
        pool(options.parallelism) {}

  const ShardedClientOptions options;
  const NodeHealthOptions health;
  ThreadPool pool;
  mutable std::mutex mu;
  std::shared_ptr<const NodeSet> set;                      // guarded by mu
  std::chrono::steady_clock::time_point resolved_at;       // guarded by mu
  std::shared_ptr<const Observer> observer;                // guarded by mu
  std::atomic<bool> resolving{false};

  Status Resolve() {
    std::vector<std::string> endpoints = options.endpoints;
    if (!options.dns_name.empty()) {
      auto resolved = options.resolve ? options.resolve(options.dns_name) : ResolveAll(options.dns_name);
      if (!resolved.ok()) return resolved.status();
      endpoints = std::move(resolved).value();
    }
    std::shared_ptr<const NodeSet> previous;
    {
      std::lock_guard lock(mu);
      previous = set;
    }
    auto next = BuildNodeSet(std::move(endpoints), previous.get(), options.client, health);
    if (!next.ok()) return next.status();
    std::lock_guard lock(mu);
    set = std::move(next).value();
    resolved_at = std::chrono::steady_clock::now();
    return Status::Ok();
  }

  // The current nodes; with a DNS name, resolved again (by one caller at a time) once the interval passed.
  // A failed re-resolution keeps the last good set.
  std::shared_ptr<const NodeSet> Nodes() {
    std::shared_ptr<const NodeSet> current;
    bool stale;
    {
      std::lock_guard lock(mu);
      current = set;
      stale = !options.dns_name.empty() && std::chrono::steady_clock::now() - resolved_at > options.resolve_interval;
    }
    if (stale && !resolving.exchange(true)) {
      if (Resolve().ok()) {
        std::lock_guard lock(mu);
        current = set;
      } else {
        std::lock_guard lock(mu);
        resolved_at = std::chrono::steady_clock::now();  // try again after another interval
      }
      resolving.store(false);
    }
    return current;
  }

  // The key's nodes, first choice first: its top `replicas` (fewer when there are fewer nodes).
  std::vector<uint32_t> Placement(const NodeSet& s, const ChunkKey& key) const {
    std::vector<uint32_t> order;
    RankNodes(s.names, key, &order);
    order.resize(std::min<size_t>(order.size(), options.replicas));
    return order;
  }

  // Asks the replicas of `placed_by` in placement order, from the `first`-th, until one has it: `fn(client)`
  // returns Result<T>. Down nodes are skipped; a miss everywhere is a default T.
  template <typename T, typename Fn>
  Result<T> FirstHit(const NodeSet& s, const ChunkKey& placed_by, size_t first, std::string_view op, Fn&& fn) {
    const std::vector<uint32_t> placement = Placement(s, placed_by);
    for (size_t n = first; n < placement.size(); ++n) {
      Result<T> r = Call(*s.nodes[placement[n]], op, fn);
      if (r.ok() && Found(*r)) return r;
      if (!r.ok() && !NodeHealth::IsTransportFailure(r.status())) return r.status();
    }
    return T{};
  }
  static bool Found(const GetResult& r) { return r.found; }
  static bool Found(const VariantGetResult& r) { return r.chunk.found; }

  // Runs `per_node(node, indices)` for every group on the pool, all at once. A node that failed in transport
  // answered nothing (its keys stay misses); the first other error is the call's.
  template <typename Fn>
  Status FanOut(const std::map<uint32_t, std::vector<size_t>>& groups, Fn&& per_node) {
    std::vector<std::future<Status>> pending;
    for (const auto& [node, indices] : groups) {
      pending.push_back(pool.Submit([&per_node, node = node, &indices = indices] { return per_node(node, indices); }));
    }
    Status first_error;
    for (auto& f : pending) {
      Status s = f.get();
      if (!s.ok() && !NodeHealth::IsTransportFailure(s) && first_error.ok()) first_error = s;
    }
    return first_error;
  }

  // Runs `fn` against a node unless its breaker keeps it out, recording the outcome. A node kept out
  // answers UNAVAILABLE without a call.
  template <typename Fn>
  auto Call(Node& node, std::string_view op, Fn&& fn) -> decltype(fn(*node.client)) {
    const NodeHealth::Admission admission = node.health.Admit();
    if (admission == NodeHealth::Admission::kDeny) {
      node.skipped.fetch_add(1, std::memory_order_relaxed);
      return Unavailable("node " + node.endpoint + " is taken out after failures");
    }
    if (admission == NodeHealth::Admission::kProbe) {
      // A node that was taken out gets real work again only once grpc.health.v1 says it is serving.
      if (Status healthy = node.client->CheckHealth(); !healthy.ok()) {
        node.health.Record(NodeHealth::IsTransportFailure(healthy) ? healthy : Unavailable(healthy.message()));
        node.skipped.fetch_add(1, std::memory_order_relaxed);
        return Unavailable("node " + node.endpoint + " failed its health check: " + healthy.message());
      }
    }
    const auto start = std::chrono::steady_clock::now();
    auto result = fn(*node.client);
    const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start);
    node.health.Record(result.status());
    node.calls.fetch_add(1, std::memory_order_relaxed);
    node.nanos.fetch_add(static_cast<uint64_t>(nanos.count()), std::memory_order_relaxed);
    if (NodeHealth::IsTransportFailure(result.status())) node.transport_failures.fetch_add(1, std::memory_order_relaxed);
    std::shared_ptr<const Observer> watch;
    {
      std::lock_guard lock(mu);
      watch = observer;
    }
    if (watch != nullptr && *watch) (*watch)(node.endpoint, op, result.status().code(), nanos.count() / 1e9);
    return result;
  }
};

ShardedClient::ShardedClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShardedClient::~ShardedClient() = default;

Result<std::unique_ptr<ShardedClient>> ShardedClient::Connect(ShardedClientOptions options) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  auto impl = std::make_unique<Impl>(std::move(options));
  KVTIER_RETURN_IF_ERROR(impl->Resolve());
  return std::unique_ptr<ShardedClient>(new ShardedClient(std::move(impl)));
}

Result<ShardedPutResult> ShardedClient::Put(const ChunkKey& key, std::span<const uint32_t> token_ids,
                                            std::span<const std::byte> kv, const PutOptions& options) {
  // A variant lives with the other variants of its content key: the server picks the best among those it holds.
  ChunkKey placed_by = key;
  if (options.reuse != nullptr) {
    auto content_key = ChunkKey::FromBytes(options.reuse->content_key());
    if (!content_key.ok()) return InvalidArgument("PutOptions.reuse.content_key: " + content_key.status().message());
    placed_by = *content_key;
  }
  const auto set = impl_->Nodes();
  ShardedPutResult out;
  for (uint32_t i : impl_->Placement(*set, placed_by)) {
    auto r = impl_->Call(*set->nodes[i], "put", [&](Client& c) { return c.Put(key, token_ids, kv, options); });
    if (r.ok()) {
      ++out.stored_on;
      out.already_present |= r->already_present;
    } else if (!NodeHealth::IsTransportFailure(r.status())) {
      return r.status();  // the same request fails on any node: the caller's to see
    }
  }
  return out;
}

Result<GetResult> ShardedClient::Get(const ChunkKey& key, std::span<std::byte> dest,
                                     std::span<const uint32_t> expected_tokens) {
  return GetFrom(*impl_->Nodes(), key, dest, expected_tokens, 0);
}

Result<GetResult> ShardedClient::GetFrom(const NodeSet& set, const ChunkKey& key, std::span<std::byte> dest,
                                         std::span<const uint32_t> expected_tokens, size_t first) {
  return impl_->FirstHit<GetResult>(set, key, first, "get",
                                    [&](Client& c) { return c.Get(key, dest, expected_tokens); });
}

Result<std::vector<GetResult>> ShardedClient::GetBatch(std::span<const ChunkKey> keys,
                                                       std::span<const std::span<std::byte>> dests) {
  if (keys.size() != dests.size()) return InvalidArgument("GetBatch needs one destination per key");
  if (keys.empty()) return InvalidArgument("GetBatch of no keys");
  const auto set = impl_->Nodes();
  // First choices, one batch per node, all nodes at once.
  std::map<uint32_t, std::vector<size_t>> groups;
  for (size_t k = 0; k < keys.size(); ++k) groups[impl_->Placement(*set, keys[k]).front()].push_back(k);
  std::vector<GetResult> results(keys.size());
  KVTIER_RETURN_IF_ERROR(impl_->FanOut(groups, [&](uint32_t node, const std::vector<size_t>& indices) -> Status {
    std::vector<ChunkKey> batch_keys;
    std::vector<std::span<std::byte>> batch_dests;
    for (size_t k : indices) {
      batch_keys.push_back(keys[k]);
      batch_dests.push_back(dests[k]);
    }
    auto r = impl_->Call(*set->nodes[node], "get", [&](Client& c) { return c.GetBatch(batch_keys, batch_dests); });
    if (!r.ok()) return r.status();
    for (size_t j = 0; j < indices.size(); ++j) results[indices[j]] = (*r)[j];
    return Status::Ok();
  }));
  // Misses and keys of a node that failed: the other replicas (the first choice was asked above).
  for (size_t k = 0; k < keys.size() && impl_->options.replicas > 1; ++k) {
    if (results[k].found) continue;
    auto r = GetFrom(*set, keys[k], dests[k], {}, /*first=*/1);
    if (!r.ok()) return r.status();
    results[k] = *r;
  }
  return results;
}

Result<std::vector<VariantGetResult>> ShardedClient::GetBestVariants(std::span<const ChunkKey> content_keys,
                                                                     std::span<const ChunkKey> prompt_context,
                                                                     std::span<const std::span<std::byte>> dests) {
  if (content_keys.size() != dests.size()) return InvalidArgument("GetBestVariants needs one destination per key");
  if (content_keys.empty()) return InvalidArgument("GetBestVariants of no keys");
  const auto set = impl_->Nodes();
  // As GetBatch, placed by content key (where Put placed the variants); every node scores against the whole prompt.
  std::map<uint32_t, std::vector<size_t>> groups;
  for (size_t k = 0; k < content_keys.size(); ++k) groups[impl_->Placement(*set, content_keys[k]).front()].push_back(k);
  std::vector<VariantGetResult> results(content_keys.size());
  KVTIER_RETURN_IF_ERROR(impl_->FanOut(groups, [&](uint32_t node, const std::vector<size_t>& indices) -> Status {
    std::vector<ChunkKey> batch_keys;
    std::vector<std::span<std::byte>> batch_dests;
    for (size_t k : indices) {
      batch_keys.push_back(content_keys[k]);
      batch_dests.push_back(dests[k]);
    }
    auto r = impl_->Call(*set->nodes[node], "get",
                         [&](Client& c) { return c.GetBestVariants(batch_keys, prompt_context, batch_dests); });
    if (!r.ok()) return r.status();
    for (size_t j = 0; j < indices.size(); ++j) results[indices[j]] = std::move((*r)[j]);
    return Status::Ok();
  }));
  for (size_t k = 0; k < content_keys.size() && impl_->options.replicas > 1; ++k) {
    if (results[k].chunk.found) continue;
    auto r = impl_->FirstHit<VariantGetResult>(*set, content_keys[k], /*first=*/1, "get",
                                               [&](Client& c) -> Result<VariantGetResult> {
      auto one = c.GetBestVariants({&content_keys[k], 1}, prompt_context, dests.subspan(k, 1));
      if (!one.ok()) return one.status();
      return std::move(one->front());
    });
    if (!r.ok()) return r.status();
    results[k] = std::move(r).value();
  }
  return results;
}

Result<LookupResult> ShardedClient::Lookup(std::span<const ChunkKey> keys, std::chrono::milliseconds lease) {
  if (keys.empty()) return InvalidArgument("Lookup of no keys");
  const auto set = impl_->Nodes();
  // Each key is asked of its first choice that is not taken out.
  std::map<uint32_t, std::vector<size_t>> groups;
  for (size_t k = 0; k < keys.size(); ++k) {
    const std::vector<uint32_t> placement = impl_->Placement(*set, keys[k]);
    uint32_t pick = placement.front();
    for (uint32_t i : placement) {
      if (set->nodes[i]->health.state() == CircuitState::kClosed) {
        pick = i;
        break;
      }
    }
    groups[pick].push_back(k);
  }
  LookupResult out;
  out.tiers.assign(keys.size(), 0);
  KVTIER_RETURN_IF_ERROR(impl_->FanOut(groups, [&](uint32_t node, const std::vector<size_t>& indices) -> Status {
    std::vector<ChunkKey> subset;
    for (size_t k : indices) subset.push_back(keys[k]);
    auto r = impl_->Call(*set->nodes[node], "lookup", [&](Client& c) { return c.Lookup(subset, lease); });
    if (!r.ok()) return r.status();
    for (size_t j = 0; j < indices.size(); ++j) out.tiers[indices[j]] = r->tiers[j];
    return Status::Ok();
  }));
  while (out.leading_hits < keys.size() && out.tiers[out.leading_hits] != 0) ++out.leading_hits;
  // What was asked for; each node caps it at its own max_lease_ttl_ms.
  out.lease_ttl_ms = out.leading_hits > 0 ? static_cast<uint32_t>(std::max<int64_t>(0, lease.count())) : 0;
  return out;
}

Result<uint32_t> ShardedClient::Delete(std::span<const ChunkKey> keys) {
  if (keys.empty()) return InvalidArgument("Delete of no keys");
  const auto set = impl_->Nodes();
  std::map<uint32_t, std::vector<ChunkKey>> groups;  // every replica of every key
  for (const ChunkKey& key : keys) {
    for (uint32_t i : impl_->Placement(*set, key)) groups[i].push_back(key);
  }
  uint32_t deleted = 0;
  for (auto& [node, group] : groups) {
    auto r = impl_->Call(*set->nodes[node], "delete", [&](Client& c) { return c.Delete(group); });
    if (r.ok()) deleted += *r;
    else if (!NodeHealth::IsTransportFailure(r.status())) return r.status();
  }
  return deleted;
}

std::vector<std::string> ShardedClient::nodes() const {
  std::lock_guard lock(impl_->mu);
  return impl_->set->names;
}

std::vector<std::string> ShardedClient::PlacementOf(const ChunkKey& key) const {
  std::shared_ptr<const NodeSet> set;
  {
    std::lock_guard lock(impl_->mu);
    set = impl_->set;
  }
  std::vector<std::string> out;
  for (uint32_t i : impl_->Placement(*set, key)) out.push_back(set->names[i]);
  return out;
}

std::vector<NodeStats> ShardedClient::node_stats() const {
  std::shared_ptr<const NodeSet> set;
  {
    std::lock_guard lock(impl_->mu);
    set = impl_->set;
  }
  std::vector<NodeStats> out;
  for (const auto& node : set->nodes) {
    NodeStats s;
    s.endpoint = node->endpoint;
    s.circuit = static_cast<NodeCircuit>(node->health.state());
    s.calls = node->calls.load(std::memory_order_relaxed);
    s.transport_failures = node->transport_failures.load(std::memory_order_relaxed);
    s.skipped = node->skipped.load(std::memory_order_relaxed);
    s.circuit_opened = node->health.opened_count();
    s.seconds = static_cast<double>(node->nanos.load(std::memory_order_relaxed)) / 1e9;
    out.push_back(std::move(s));
  }
  return out;
}

void ShardedClient::SetObserver(Observer observer) {
  auto shared = std::make_shared<const Observer>(std::move(observer));
  std::lock_guard lock(impl_->mu);
  impl_->observer = std::move(shared);
}

}  // namespace kvtier
