// LocalServer: the same-host shared-memory path (kvstore/SHM.md). Clients on the server's host connect to
// a Unix domain socket, bind the connection to one namespace that is allowed to share memory
// (StoreOptions.shared_arena_bytes), receive that namespace's arena as a read-only memfd (SCM_RIGHTS) and
// a private put window, and then move payloads by memcpy instead of TCP:
//   get:  (offset, length, checksum) of each hit under a lease; the client copies, then releases;
//   put:  reserve an extent of the window, the client writes it, commit (checksum verified) -> visible.
// Leases end on release, on expiry, or when the connection closes (a crashed client holds nothing).
//
// One thread per connection (local clients are a handful of workers per node), bounded by
// max_connections. Thread-safe; Stop() may be called from any thread and is idempotent.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "kvtier/api/status.h"

namespace kvtier {

class Authorizer;
class Metrics;
class Store;

struct LocalServerOptions {
  std::string socket_path;                 // Unix socket; empty = no same-host path
  uint32_t socket_mode = 0660;             // file mode of the socket: who on this host may connect
  uint64_t put_window_bytes = 64ull << 20;  // per connection, pre-faulted; 0 = puts go over gRPC
  uint32_t max_connections = 64;
  uint32_t default_lease_ms = 5000;        // for gets that ask for none
  uint32_t max_leases_per_connection = 4096;

  bool enabled() const { return !socket_path.empty(); }
  Status Validate() const;
};

class LocalServer {
 public:
  // Binds the socket (a stale socket file nobody listens on is replaced; one a live server holds is
  // UNAVAILABLE) and starts accepting. `auth` may be null (no authentication).
  static Result<std::unique_ptr<LocalServer>> Start(Store* store, Metrics* metrics, const Authorizer* auth,
                                                    const LocalServerOptions& options, uint64_t instance_id,
                                                    uint32_t max_lease_ms);
  ~LocalServer();
  LocalServer(const LocalServer&) = delete;
  LocalServer& operator=(const LocalServer&) = delete;

  // Closes the socket and every connection (their leases end) and removes the socket file.
  void Stop();

  const std::string& socket_path() const { return options_.socket_path; }
  uint64_t instance_id() const { return instance_id_; }
  uint64_t connections() const { return connections_.load(std::memory_order_relaxed); }
  uint64_t leases() const { return leases_.load(std::memory_order_relaxed); }  // held now, all connections

 private:
  struct Connection;
  LocalServer(Store* store, Metrics* metrics, const Authorizer* auth, LocalServerOptions options,
              uint64_t instance_id, uint32_t max_lease_ms);
  void AcceptLoop();
  void Serve(Connection* connection);
  void ReapFinished();

  Store* const store_;
  Metrics* const metrics_;
  const Authorizer* const auth_;
  const LocalServerOptions options_;
  const uint64_t instance_id_;
  const uint32_t max_lease_ms_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd that ends the accept loop
  std::thread acceptor_;
  std::mutex mu_;
  std::list<std::unique_ptr<Connection>> live_;  // guarded by mu_
  bool stopped_ = false;                         // guarded by mu_
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> leases_{0};
};

}  // namespace kvtier
