// HostTier: the host DRAM tier, a pre-faulted HostArena carved up by an ExtentAllocator.
//
// Thread-safe: allocation takes an internal mutex (held for a few map operations); reads and writes
// are plain memory copies into placements the caller owns.
#pragma once

#include <memory>

#include "kvtier/kvstore/host_arena.h"
#include "kvtier/kvstore/placement_space.h"
#include "kvtier/kvstore/tier.h"

namespace kvtier {

class HostTier final : public Tier {
 public:
  static Result<std::unique_ptr<HostTier>> Create(const HostArenaOptions& options);

  TierKind kind() const override { return TierKind::kHost; }
  uint64_t capacity_bytes() const override { return arena_.size(); }
  uint64_t used_bytes() const override { return space_.used_bytes(); }
  Result<Placement> Allocate(uint64_t bytes) override { return space_.Allocate(bytes); }
  void Free(const Placement& placement) override { space_.Free(placement); }
  std::span<std::byte> Map(const Placement& placement) override;
  Status Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) override;
  Status Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) override;

  const HostArena& arena() const { return arena_; }
  uint64_t largest_free_bytes() const { return space_.largest_free_bytes(); }

 private:
  explicit HostTier(HostArena arena);

  HostArena arena_;
  PlacementSpace space_;
};

}  // namespace kvtier
