#include "shard/node_set.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace kvtier {

Result<std::vector<std::string>> ResolveAll(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size()) {
    return InvalidArgument("DNS name '" + host_port + "' must be host:port");
  }
  std::string host = host_port.substr(0, colon);
  const std::string port = host_port.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &list); rc != 0) {
    return Unavailable("cannot resolve " + host_port + ": " + gai_strerror(rc));
  }
  std::vector<std::string> out;
  for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
    char ip[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, ip, sizeof(ip));
      out.push_back(std::string(ip) + ":" + port);
    } else if (a->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, ip, sizeof(ip));
      out.push_back("[" + std::string(ip) + "]:" + port);
    }
  }
  freeaddrinfo(list);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.empty()) return Unavailable(host_port + " resolved to no address");
  return out;
}

Result<std::shared_ptr<const NodeSet>> BuildNodeSet(std::vector<std::string> endpoints, const NodeSet* previous,
                                                    const ClientOptions& client_options,
                                                    const NodeHealthOptions& health_options) {
  std::sort(endpoints.begin(), endpoints.end());
  endpoints.erase(std::unique(endpoints.begin(), endpoints.end()), endpoints.end());
  if (endpoints.empty()) return InvalidArgument("a sharded client needs at least one node");
  auto set = std::make_shared<NodeSet>();
  for (const std::string& endpoint : endpoints) {
    std::shared_ptr<Node> node;
    if (previous != nullptr) {
      auto it = std::lower_bound(previous->names.begin(), previous->names.end(), endpoint);
      if (it != previous->names.end() && *it == endpoint) node = previous->nodes[it - previous->names.begin()];
    }
    if (node == nullptr) {
      ClientOptions o = client_options;
      o.endpoint = endpoint;
      o.max_attempts = 1;  // the breaker decides when a node is tried again ...
      o.reconnect_backoff = health_options.initial_backoff;  // ... and gRPC must not wait longer to reconnect
      o.max_reconnect_backoff = health_options.max_backoff;
      auto client = Client::Connect(o);
      if (!client.ok()) return Status(client.status().code(), endpoint + ": " + client.status().message());
      node = std::make_shared<Node>(endpoint, std::move(client).value(), health_options);
    }
    set->names.push_back(endpoint);
    set->nodes.push_back(std::move(node));
  }
  return std::shared_ptr<const NodeSet>(std::move(set));
}

}  // namespace kvtier
