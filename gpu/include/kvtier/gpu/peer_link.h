// PeerLink: an ordered two-party channel that moves device buffers from one process's GPU to another's, what
// the service's GPU channel sends GPU-tier chunks over (kvstore/GPU_TIER.md "NCCL channel"). Two kinds:
//   - kNccl: an NcclChannel (nccl_channel.h) with a stream of its own, on the device given at Join;
//   - kLoopback: its CPU twin, both ends in one process (host memory, memcpy), so that the protocol above the
//     link runs in CI without GPUs. A loopback Recv checks the size against the Send it matches; NCCL cannot.
// One side makes an id (NewPeerLinkId), the id travels to the other side (over gRPC), both Join with their
// rank, then Send on one side matches Recv on the other, in order, with equal sizes.
//
// Ownership: a link owns its communicator and stream; destroying it breaks the link for the peer (a loopback
// peer's pending Recv fails at once; an NCCL peer's operations end only by its own Wait timing out). Every wait
// is bounded, provided NCCL's own abort returns. Not
// thread-safe: one thread at a time per link. Buffers stay valid until Wait returned.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "kvtier/api/status.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {

enum class PeerLinkKind : uint8_t { kNccl = 1, kLoopback = 2 };

const char* PeerLinkKindName(PeerLinkKind kind);

struct PeerLinkId {
  PeerLinkKind kind = PeerLinkKind::kNccl;
  std::array<std::byte, 128> bytes{};  // ncclUniqueId's bytes, or a random loopback name
};

// A fresh id. kNccl: UNAVAILABLE without NCCL, CUDA or a GPU (the reason says which).
Result<PeerLinkId> NewPeerLinkId(PeerLinkKind kind);

class PeerLink {
 public:
  virtual ~PeerLink() = default;

  virtual PeerLinkKind kind() const = 0;
  // Enqueue sending / receiving `bytes` bytes of device memory (the twin: host memory, done at once) on the
  // link's own stream. An error breaks the link.
  virtual Status Send(const void* data, size_t bytes) = 0;
  virtual Status Recv(void* data, size_t bytes) = 0;
  // Makes the link's later operations wait for the work queued so far on `stream` (a stream of the link's
  // device), without blocking the host. The twin has nothing to wait for.
  virtual Status After(StreamHandle stream) = 0;
  // Blocks the host until every operation enqueued so far has finished. Past `timeout` (a peer that died or
  // never matched) the link is broken, its operations are ended with their buffers undefined, and UNAVAILABLE
  // names the timeout. A broken link answers UNAVAILABLE to everything, with the first error's reason.
  virtual Status Wait(std::chrono::milliseconds timeout) = 0;
  // Breaks the link now: pending operations end (their buffers undefined; the call returns once nothing
  // touches them any more), and every later call answers UNAVAILABLE. For an owner giving up mid-transfer.
  virtual void Abort() = 0;
};

// Joins link `id` as `rank` (0 or 1), waiting at most `timeout` for the peer, or until `give_up` (polled;
// may be empty) says to stop. kNccl: on CUDA device `device` (-1: the current one), where the link stays.
// `timeout` also bounds how long a later Send/Recv waits for NCCL to take it. UNAVAILABLE when the peer does
// not come or the kind is not available here.
Result<std::unique_ptr<PeerLink>> JoinPeerLink(const PeerLinkId& id, int rank, int device,
                                               std::chrono::milliseconds timeout,
                                               const std::function<bool()>& give_up = {});

}  // namespace kvtier::gpu
