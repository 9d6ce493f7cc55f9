// The NCCL kind of PeerLink, built in nccl_channel.cc (next to the run-time-loaded NCCL API).
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "kvtier/gpu/nccl_channel.h"
#include "kvtier/gpu/peer_link.h"

namespace kvtier::gpu::internal {

Result<std::unique_ptr<PeerLink>> JoinNcclLink(const NcclUniqueId& id, int rank, int device,
                                               std::chrono::milliseconds timeout, const std::function<bool()>& give_up);

}  // namespace kvtier::gpu::internal
