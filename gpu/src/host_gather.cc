#include "kvtier/gpu/host_gather.h"

#include <cstring>

#include "checks.h"

namespace kvtier::gpu {

uint64_t GatherOutputBytes(const BlockGather& g) { return uint64_t{g.num_selected} * g.block_bytes; }

Status GatherBlocksCpu(const BlockGather& g, std::span<std::byte> out) {
  KVTIER_RETURN_IF_ERROR(detail::CheckGatherCall(g, out.data(), out.size(), true));
  for (uint32_t i = 0; i < g.num_selected; ++i) {
    std::memcpy(out.data() + i * g.block_bytes, g.source + static_cast<uint64_t>(g.block_ids[i]) * g.block_bytes,
                g.block_bytes);
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu
