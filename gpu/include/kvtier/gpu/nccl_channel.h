// NcclChannel: a two-rank NCCL communicator that moves chunk buffers GPU to GPU between two processes (on two
// nodes, or two GPUs of one node), the fast path under gRPC for cross-node GPU-to-GPU transfers: one side
// creates a unique id (NcclCreateUniqueId), the two sides exchange it over gRPC, both Connect with their rank,
// then ncclSend / ncclRecv carry the bytes on the callers' streams.
//
// NCCL is loaded at run time (dlopen of libnccl.so.2): no binary needs NCCL to start, and a machine without it,
// without CUDA or without a GPU gets UNAVAILABLE with the reason, so callers fall back to gRPC. NCCL puts each
// rank of a communicator on its own GPU: two processes sharing one GPU cannot form a channel.
//
// PeerLink (peer_link.h) wraps a channel with a stream of its own and a Wait that cannot hang.
//
// Ownership: the channel owns its communicator (destroyed with it, aborted when Connect gives up). Movable, not
// copyable. Send/Recv may be called from one thread at a time per channel (NCCL's rule for a communicator); the
// buffers are device memory the caller keeps alive until `stream` has passed the operation.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "kvtier/api/status.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {

// ncclUniqueId's bytes: what travels over gRPC.
struct NcclUniqueId {
  std::array<std::byte, 128> bytes{};
};

// The loaded NCCL's version ("2.27.3"), or UNAVAILABLE saying why there is none.
Result<std::string> NcclVersion();

// A fresh id for a new channel (the rank-0 side calls it). UNAVAILABLE without NCCL, CUDA or a GPU.
Result<NcclUniqueId> NcclCreateUniqueId();

class NcclChannel {
 public:
  // Joins the two-rank communicator `id` as `rank` (0 or 1) on the current CUDA device, waiting at most
  // `timeout` for the peer, or until `give_up` (polled, may be empty) says so: UNAVAILABLE naming why, the
  // attempt aborted. `timeout` also bounds each later Send/Recv's wait for NCCL to accept it (the first one
  // waits for the peer's matching call, which makes the connection).
  static Result<NcclChannel> Connect(const NcclUniqueId& id, int rank,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(30),
                                     const std::function<bool()>& give_up = {});

  NcclChannel(NcclChannel&& other) noexcept;
  NcclChannel& operator=(NcclChannel&& other) noexcept;
  NcclChannel(const NcclChannel&) = delete;
  NcclChannel& operator=(const NcclChannel&) = delete;
  ~NcclChannel();

  int rank() const { return rank_; }
  // Enqueues sending `bytes` bytes of device memory to the other rank, which must Recv the same size.
  Status Send(const void* device_data, size_t bytes, StreamHandle stream);
  // Enqueues receiving `bytes` bytes from the other rank into device memory.
  Status Recv(void* device_data, size_t bytes, StreamHandle stream);
  // The communicator's asynchronous error (a peer gone, a network error); Ok while it is healthy.
  Status AsyncError() const;
  // Ends every pending operation (their buffers undefined); the channel is unusable afterwards.
  void Abort();

 private:
  NcclChannel(void* comm, int rank, std::chrono::milliseconds patience)
      : comm_(comm), rank_(rank), patience_(patience) {}
  void* comm_ = nullptr;  // ncclComm_t, owned
  int rank_ = 0;
  std::chrono::milliseconds patience_{0};  // bound of a Send/Recv's wait for NCCL to accept it
};

}  // namespace kvtier::gpu
