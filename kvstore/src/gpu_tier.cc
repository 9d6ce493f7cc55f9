#include "kvtier/kvstore/gpu_tier.h"

namespace kvtier {

GpuTier::GpuTier(std::unique_ptr<DeviceMemory> memory)
    : memory_(std::move(memory)), space_(memory_->size(), "GPU") {}

Status GpuTier::Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) {
  KVTIER_RETURN_IF_ERROR(space_.CheckWithin(placement, offset, data.size(), "write"));
  return memory_->CopyToDevice(placement.offset + offset, data);
}

Status GpuTier::Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) {
  KVTIER_RETURN_IF_ERROR(space_.CheckWithin(placement, offset, out.size(), "read"));
  return memory_->CopyToHost(placement.offset + offset, out);
}

}  // namespace kvtier
