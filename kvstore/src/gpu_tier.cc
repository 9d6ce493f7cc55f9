#include "kvtier/kvstore/gpu_tier.h"

#include <string>

namespace kvtier {
namespace {

Status CheckWithin(const Placement& placement, uint64_t offset, uint64_t bytes, const char* what) {
  if (offset <= placement.length && bytes <= placement.length - offset) return Status::Ok();
  return InvalidArgument(std::string(what) + " past the end of a GPU placement");
}

}  // namespace

GpuTier::GpuTier(std::unique_ptr<DeviceMemory> memory)
    : memory_(std::move(memory)), allocator_(memory_->size()) {}

uint64_t GpuTier::capacity_bytes() const { return allocator_.capacity_bytes(); }

uint64_t GpuTier::used_bytes() const {
  std::lock_guard lock(mu_);
  return allocator_.used_bytes();
}

Result<Placement> GpuTier::Allocate(uint64_t bytes) {
  std::lock_guard lock(mu_);
  auto extent = allocator_.Allocate(bytes);
  if (!extent) return ResourceExhausted("gpu tier has no free extent of " + std::to_string(bytes) + " bytes");
  return Placement{extent->offset, extent->length};
}

void GpuTier::Free(const Placement& placement) {
  std::lock_guard lock(mu_);
  allocator_.Free({placement.offset, placement.length});
}

Status GpuTier::Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) {
  KVTIER_RETURN_IF_ERROR(CheckWithin(placement, offset, data.size(), "write"));
  return memory_->CopyToDevice(placement.offset + offset, data);
}

Status GpuTier::Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) {
  KVTIER_RETURN_IF_ERROR(CheckWithin(placement, offset, out.size(), "read"));
  return memory_->CopyToHost(placement.offset + offset, out);
}

}  // namespace kvtier
