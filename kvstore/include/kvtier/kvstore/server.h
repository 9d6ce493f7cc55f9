// Server: a running kvtier node — a Store, the gRPC service (plus grpc.health.v1 and reflection) on a
// socket, and the Prometheus endpoint. `kvtier serve` is a thin main over this; integration tests
// start it in-process on OS-chosen ports. Thread-safe; Shutdown may be called from any thread
// (e.g. a signal watcher) while another thread is in Wait.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "kvtier/kvstore/config.h"

namespace grpc {
class Server;
}

namespace kvtier {

class Server {
 public:
  // Reserves the host arena, binds both addresses and starts serving. UNAVAILABLE when an address
  // cannot be bound; INVALID_ARGUMENT for a bad config.
  static Result<std::unique_ptr<Server>> Start(const ServerConfig& config);
  ~Server();

  int port() const { return port_; }                  // bound gRPC port
  int metrics_port() const { return metrics_port_; }  // 0 when metrics are disabled
  std::string address() const;                        // "127.0.0.1:<port>"
  Store& store() { return *store_; }
  Metrics& metrics() { return *metrics_; }
  LocalServer* local() { return local_.get(); }  // null when shared_memory.socket is not set

  // Stops accepting calls, lets in-flight calls finish for up to `grace`, then cancels the rest.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  void Wait();

 private:
  Server() = default;

  ServerConfig config_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<class Authorizer> auth_;  // null: no authentication
  std::unique_ptr<class KvTierService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<class LocalServer> local_;  // the shared-memory path; declared after store_: ends first
  int port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace kvtier
