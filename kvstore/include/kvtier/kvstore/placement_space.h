// PlacementSpace: a byte-addressed tier's address space handed out as Placements by an ExtentAllocator behind
// a mutex: the bookkeeping HostTier and GpuTier share (they differ only in how bytes move in and out).
//
// Thread-safe: Allocate/Free and the counters take the internal mutex for a few map operations.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "kvtier/api/status.h"
#include "kvtier/kvstore/extent_allocator.h"
#include "kvtier/kvstore/tier.h"

namespace kvtier {

class PlacementSpace {
 public:
  // `tier` names the tier in error messages ("host", "gpu").
  PlacementSpace(uint64_t capacity_bytes, std::string tier) : tier_(std::move(tier)), allocator_(capacity_bytes) {}

  uint64_t capacity_bytes() const { return allocator_.capacity_bytes(); }
  uint64_t used_bytes() const;
  uint64_t largest_free_bytes() const;
  // RESOURCE_EXHAUSTED when no free extent is large enough.
  Result<Placement> Allocate(uint64_t bytes);
  void Free(const Placement& placement);

  // INVALID_ARGUMENT ("<what> past the end of a <tier> placement") unless [offset, offset + bytes) lies in it.
  Status CheckWithin(const Placement& placement, uint64_t offset, uint64_t bytes, const char* what) const;

 private:
  const std::string tier_;
  mutable std::mutex mu_;
  ExtentAllocator allocator_;  // guarded by mu_
};

}  // namespace kvtier
