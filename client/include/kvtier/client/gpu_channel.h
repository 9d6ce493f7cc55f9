// GpuChannel: receives chunks of a server's GPU tier straight into this process's device memory over a peer
// link (NCCL between two GPUs, on two nodes or one; the loopback twin in tests): the cross-node GPU-to-GPU
// path (kvstore/GPU_TIER.md "NCCL channel"). Client::OpenGpuChannel opens one: a KvTier.GpuChannel stream
// carries the link's id and, per get, which chunks follow; the payloads come over the link, never through
// host memory.
//
// The link carries the leading raw chunks the server holds on its GPU. The rest (a chunk without a GPU copy,
// an encoded one, the keys after a miss) are the caller's to fetch over gRPC: the channel is a fast path next
// to Client::GetBatch, never the only one. PagedKvTransfer uses it on its own (PagedTransferOptions::nccl).
//
// Ownership: owns its stream and link; the Client that opened it must outlive it. Not thread-safe: one
// thread at a time. After an error the channel is broken and every call answers that error: open a new one
// or use gRPC.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/client/client.h"
#include "kvtier/gpu/peer_link.h"

namespace kvtier {

class GpuChannel {
 public:
  ~GpuChannel();
  GpuChannel(const GpuChannel&) = delete;
  GpuChannel& operator=(const GpuChannel&) = delete;

  struct Answer {
    // The leading keys whose payloads were received, in order: found, bytes, num_tokens, base_position,
    // tier = TIER_GPU.
    std::vector<GetResult> received;
    bool stopped_at_miss = false;  // the key after them is a miss (else a hit the link does not carry, or the end)
  };

  // Asks for `keys` and receives the leading chunks the server sends into dests[i] (device memory on the
  // link's device, max_payload_bytes each; the twin: host memory). The receives wait for the work queued so
  // far on `after` (so that the caller's buffers are free), and the call blocks until they landed, at most
  // the channel's timeout. INVALID_ARGUMENT (channel intact) for fewer dests than keys.
  Result<Answer> Get(std::span<const ChunkKey> keys, std::span<std::byte* const> dests, uint64_t max_payload_bytes,
                     gpu::StreamHandle after);

  gpu::PeerLinkKind link_kind() const;
  // The server's GPU, as it named it (for logs).
  const std::string& server_device() const;

 private:
  friend class Client;
  struct State;
  explicit GpuChannel(std::unique_ptr<State> state);
  Status Break(Status status);

  std::unique_ptr<State> state_;
};

}  // namespace kvtier
