// NodeSet: the nodes of a sharded cluster as one immutable snapshot (endpoint names in placement order,
// their clients and circuit breakers), and how it is discovered: a static list, or every address a DNS
// name resolves to. A new snapshot keeps the Node objects of endpoints that stay, so their connections,
// breakers and counters survive a re-resolution. Snapshots are shared (shared_ptr) and never mutated.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "kvtier/client/client.h"
#include "shard/node_health.h"

namespace kvtier {

struct Node {
  Node(std::string name, std::unique_ptr<Client> c, NodeHealthOptions health_options)
      : endpoint(std::move(name)), client(std::move(c)), health(health_options) {}

  const std::string endpoint;
  const std::unique_ptr<Client> client;
  NodeHealth health;
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> transport_failures{0};
  std::atomic<uint64_t> skipped{0};
  std::atomic<uint64_t> nanos{0};
};

struct NodeSet {
  std::vector<std::string> names;            // sorted endpoints: the input of rendezvous hashing
  std::vector<std::shared_ptr<Node>> nodes;  // parallel to names
};

// Every address "host:port" resolves to, as "ip:port" ("[ip6]:port"), sorted and without duplicates.
// UNAVAILABLE when it resolves to nothing.
Result<std::vector<std::string>> ResolveAll(const std::string& host_port);

// A snapshot for `endpoints`, reusing nodes of `previous` (may be null) for endpoints it already had.
Result<std::shared_ptr<const NodeSet>> BuildNodeSet(std::vector<std::string> endpoints, const NodeSet* previous,
                                                    const ClientOptions& client_options,
                                                    const NodeHealthOptions& health_options);

}  // namespace kvtier
