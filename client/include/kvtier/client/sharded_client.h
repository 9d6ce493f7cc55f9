// ShardedClient: one cache over many kvtier servers, with placement done by the client (DESIGN §8).
//
// Each chunk key is placed by rendezvous (highest-random-weight) hashing over the node names (endpoints),
// so every client agrees on where a key lives without coordination, keys spread evenly, and adding or
// removing one of N nodes moves only about 1/N of them. With `replicas` = R a put goes to the key's top R
// nodes and a get tries them in order.
//
// Variants (PutOptions.reuse) are placed by their content key, not their own key, so all variants of a
// content key live on the same node(s) and GetBestVariants picks among all of them. Reach them through
// GetBestVariants, and remove them by deleting the content key; a Get, Lookup or Delete of a variant key
// itself looks on that key's nodes, where the variant usually is not.
//
// Nodes come from a static list or from a DNS name that resolves to many addresses (a Kubernetes headless
// Service), re-resolved periodically. Each node has a circuit breaker: after repeated transport failures
// (UNAVAILABLE, DEADLINE_EXCEEDED) it is skipped, with doubling backoff, until a probe succeeds. A node that
// is down or skipped never turns into an error for the caller: its keys are misses and its puts are not
// stored (the worker recomputes). Errors the server would give any caller (a bad shape, a full tier) are
// returned as they are. A node that comes back empty gets its own share of new writes and no more: the
// placement does not depend on how full nodes are.
//
// Thread-safe: share one ShardedClient among threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvtier/client/client.h"

namespace kvtier {

struct NodeSet;  // client/src/shard/node_set.h

struct ShardedClientOptions {
  ClientOptions client;                    // for every node; its `endpoint` is ignored
  std::vector<std::string> endpoints;      // static node list ("host:port"), or ...
  std::string dns_name;                    // ... "name:port" resolved to every address it has
  std::chrono::milliseconds resolve_interval{10000};  // how often dns_name is resolved again
  uint32_t replicas = 1;                   // nodes per key, 1..number of nodes
  uint32_t failures_to_open = 3;           // transport failures in a row that take a node out
  std::chrono::milliseconds initial_backoff{500};     // first wait before probing a node that was taken out
  std::chrono::milliseconds max_backoff{30000};       // the wait doubles per failed probe up to this
  uint32_t parallelism = 8;                // threads for calls that fan out to several nodes
  // How dns_name becomes endpoints; empty = DNS (every A/AAAA record). A hook for tests and custom discovery.
  std::function<Result<std::vector<std::string>>(const std::string& dns_name)> resolve;

  Status Validate() const;
  // The cluster's shape from the environment, over `base` (which carries namespace, fingerprint, TLS...):
  // KVTIER_ENDPOINTS (comma-separated host:port), KVTIER_DNS_NAME (host:port), KVTIER_REPLICAS,
  // KVTIER_RESOLVE_INTERVAL_MS. The Helm chart renders these into the ConfigMap "<release>-kvtier-client" for
  // workers to load with envFrom. INVALID_ARGUMENT naming the variable for a bad value.
  static Result<ShardedClientOptions> FromEnvironment(ShardedClientOptions base);
};

struct ShardedPutResult {
  bool already_present = false;  // some node had it already
  uint32_t stored_on = 0;        // nodes that hold the chunk after the call (0: every target was down)
};

enum class NodeCircuit { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

// What the client saw of one node; for the worker's metrics.
struct NodeStats {
  std::string endpoint;
  NodeCircuit circuit = NodeCircuit::kClosed;
  uint64_t calls = 0;
  uint64_t transport_failures = 0;
  uint64_t skipped = 0;          // calls not sent because the node was taken out
  uint64_t circuit_opened = 0;   // times it was taken out
  double seconds = 0;            // total time of the calls sent to it
};

class ShardedClient {
 public:
  // Called after every call to a node (from the calling thread): register it to feed a metrics
  // registry. `op` is "put", "get" (GetBestVariants too), "lookup", "exists" or "delete".
  using Observer = std::function<void(const std::string& endpoint, std::string_view op, StatusCode code,
                                      double seconds)>;

  // Resolves the nodes (INVALID_ARGUMENT / UNAVAILABLE when there are none) and connects lazily.
  static Result<std::unique_ptr<ShardedClient>> Connect(ShardedClientOptions options);
  ~ShardedClient();
  ShardedClient(const ShardedClient&) = delete;
  ShardedClient& operator=(const ShardedClient&) = delete;

  // With options.reuse set, placed by reuse->content_key (INVALID_ARGUMENT unless its 16 bytes).
  Result<ShardedPutResult> Put(const ChunkKey& key, std::span<const uint32_t> token_ids,
                               std::span<const std::byte> kv, const PutOptions& options = {});
  Result<GetResult> Get(const ChunkKey& key, std::span<std::byte> dest,
                        std::span<const uint32_t> expected_tokens = {});
  // Keys grouped by node, the groups fetched in parallel; dests[i] receives keys[i].
  Result<std::vector<GetResult>> GetBatch(std::span<const ChunkKey> keys, std::span<const std::span<std::byte>> dests);
  // Client::GetBestVariants over the cluster: content keys grouped by their first-choice node and fetched in
  // parallel, each node scoring against the whole prompt_context; misses and keys of a down node are asked
  // of the other replicas in order, as in GetBatch. dests[i] receives content_keys[i]'s best variant.
  Result<std::vector<VariantGetResult>> GetBestVariants(std::span<const ChunkKey> content_keys,
                                                        std::span<const ChunkKey> prompt_context,
                                                        std::span<const std::span<std::byte>> dests);
  // A prefix chain spread over nodes: every node is asked for its keys in parallel, and the answer is the
  // leading run of hits in chain order. A lease applies, on each node, to that node's leading hits.
  Result<LookupResult> Lookup(std::span<const ChunkKey> keys,
                              std::chrono::milliseconds lease = std::chrono::milliseconds(0));
  // Removed from every replica that answers; a content key takes its variants with it (they share its nodes).
  Result<uint32_t> Delete(std::span<const ChunkKey> keys);

  // The nodes now, in the order rendezvous hashing sees them, and the nodes a key is placed on.
  std::vector<std::string> nodes() const;
  std::vector<std::string> PlacementOf(const ChunkKey& key) const;
  std::vector<NodeStats> node_stats() const;
  void SetObserver(Observer observer);

 private:
  struct Impl;
  explicit ShardedClient(std::unique_ptr<Impl> impl);
  // A get from the key's replicas in placement order, starting at the `first`-th.
  Result<GetResult> GetFrom(const NodeSet& set, const ChunkKey& key, std::span<std::byte> dest,
                            std::span<const uint32_t> expected_tokens, size_t first);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier
