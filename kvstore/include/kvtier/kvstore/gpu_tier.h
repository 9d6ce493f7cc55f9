// GpuTier: the GPU tier, one DeviceMemory arena carved up by an ExtentAllocator (DESIGN §4). Its bytes are
// not host addressable: Map() is empty and the Store moves a chunk's body in and out with Write and Read,
// which copy through the DeviceMemory synchronously.
//
// Owns its DeviceMemory. Thread-safe: allocation takes an internal mutex (held for a few map operations);
// reads and writes of placements the caller owns go straight to the device and may run concurrently.
#pragma once

#include <memory>

#include "kvtier/kvstore/device_memory.h"
#include "kvtier/kvstore/placement_space.h"
#include "kvtier/kvstore/tier.h"

namespace kvtier {

class GpuTier final : public Tier {
 public:
  explicit GpuTier(std::unique_ptr<DeviceMemory> memory);

  TierKind kind() const override { return TierKind::kGpu; }
  uint64_t capacity_bytes() const override { return space_.capacity_bytes(); }
  uint64_t used_bytes() const override { return space_.used_bytes(); }
  Result<Placement> Allocate(uint64_t bytes) override { return space_.Allocate(bytes); }
  void Free(const Placement& placement) override { space_.Free(placement); }
  std::span<std::byte> Map(const Placement&) override { return {}; }
  Status Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) override;
  Status Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) override;

  const DeviceMemory& memory() const { return *memory_; }
  DeviceMemory& memory() { return *memory_; }

 private:
  std::unique_ptr<DeviceMemory> memory_;
  PlacementSpace space_;
};

}  // namespace kvtier
