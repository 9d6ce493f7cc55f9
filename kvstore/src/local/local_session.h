// LocalSession: the state and request handling of one same-host connection (kvstore/SHM.md): its scope,
// the namespace arena it maps, its put window, and the leases and reservations it holds. Destroying the
// session ends all of them, which is what makes a crashed client harmless. Used by one connection
// thread only: not thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvtier/kvstore/extent_allocator.h"
#include "kvtier/kvstore/host_arena.h"
#include "kvtier/kvstore/local_server.h"
#include "kvtier/kvstore/store.h"
#include "kvtier/v1/local.pb.h"

namespace kvtier {

class LocalSession {
 public:
  struct Env {
    Store* store;
    Metrics* metrics;                 // may be null
    const Authorizer* auth;           // may be null
    const LocalServerOptions* options;
    uint64_t instance_id;
    uint32_t max_lease_ms;
    std::atomic<uint64_t>* leases;    // the server-wide count of held leases
  };

  explicit LocalSession(Env env) : env_(env) {}
  ~LocalSession();
  LocalSession(const LocalSession&) = delete;
  LocalSession& operator=(const LocalSession&) = delete;

  // Answers one request. Descriptors to send with the reply are appended to `fds`; they stay valid
  // until AfterSend().
  void Handle(const v1::LocalRequest& request, v1::LocalResponse* response, std::vector<int>* fds);
  void AfterSend();

  // Ends leases past their deadline; the wait until the next one ends (-1: none held).
  void ExpireLeases();
  int MillisUntilNextExpiry() const;

 private:
  struct Lease {
    ChunkRef ref;
    bool gpu_held = false;  // Store::HoldGpuCopy: released with the lease
    int64_t deadline_ns = 0;
    uint32_t generation = 0;
    bool live = false;
  };
  struct Reservation {
    ExtentAllocator::Extent extent;
    PutSpec spec;
    std::vector<uint32_t> tokens;
    uint32_t generation = 0;
    bool live = false;
  };

  Status Hello(const v1::LocalHello& hello, v1::LocalHelloReply* reply, std::vector<int>* fds);
  Status Get(const v1::LocalGet& get, v1::LocalGetReply* reply);
  Status Release(const v1::LocalRelease& release, v1::LocalReleaseReply* reply);
  Status Reserve(const v1::LocalReserve& reserve, v1::LocalReserveReply* reply);
  Status Commit(const v1::LocalCommit& commit, v1::LocalCommitReply* reply);
  Status Abort(const v1::LocalAbort& abort);
  Result<Reservation*> FindReservation(uint64_t id);
  void EndLease(Lease& lease, uint32_t slot);
  void EndReservation(Reservation& reservation, uint32_t slot);

  Env env_;
  bool greeted_ = false;
  bool gpu_exported_ = false;  // the hello handed out the GPU arena's IPC handle: gets may name GPU copies
  bool can_write_ = false;
  std::string name_space_;
  Scope scope_;
  const HostArena* arena_ = nullptr;  // the namespace's shared arena, owned by the store
  HostArena window_;                  // this connection's put window (empty when none)
  std::unique_ptr<ExtentAllocator> window_extents_;
  std::vector<Lease> leases_;         // slot-indexed; ids are generation << 32 | slot
  std::vector<uint32_t> free_lease_slots_;
  uint32_t live_leases_ = 0;
  std::vector<Reservation> reservations_;
  std::vector<uint32_t> free_reservation_slots_;
  int pending_close_fd_ = -1;         // the read-only arena descriptor sent with the Hello reply
};

}  // namespace kvtier
