// GpuTier: the GPU tier, one DeviceMemory arena carved up by an ExtentAllocator (DESIGN §4). Its bytes are
// not host addressable: Map() is empty and the Store moves a chunk's body in and out with Write and Read,
// which copy through the DeviceMemory synchronously.
//
// Owns its DeviceMemory. Thread-safe: allocation takes an internal mutex (held for a few map operations);
// reads and writes of placements the caller owns go straight to the device and may run concurrently.
#pragma once

#include <memory>
#include <mutex>

#include "kvtier/kvstore/device_memory.h"
#include "kvtier/kvstore/extent_allocator.h"
#include "kvtier/kvstore/tier.h"

namespace kvtier {

class GpuTier final : public Tier {
 public:
  explicit GpuTier(std::unique_ptr<DeviceMemory> memory);

  TierKind kind() const override { return TierKind::kGpu; }
  uint64_t capacity_bytes() const override;
  uint64_t used_bytes() const override;
  Result<Placement> Allocate(uint64_t bytes) override;
  void Free(const Placement& placement) override;
  std::span<std::byte> Map(const Placement&) override { return {}; }
  Status Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) override;
  Status Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) override;

  const DeviceMemory& memory() const { return *memory_; }

 private:
  std::unique_ptr<DeviceMemory> memory_;
  mutable std::mutex mu_;
  ExtentAllocator allocator_;  // guarded by mu_
};

}  // namespace kvtier
