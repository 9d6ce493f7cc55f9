// ExtentAllocator: best-fit allocation of contiguous extents out of a fixed range of units.
//
// Offsets and lengths are in bytes, rounded up to `unit_bytes` (default 4 KiB). Free extents are kept
// twice, by address (for coalescing on free) and by (size, address) (for best fit, lowest address on
// ties, which keeps fragmentation low). Node memory comes from a pool that recycles freed nodes, so
// after warm-up neither Allocate nor Free calls malloc. All operations are O(log free extents).
// Not thread-safe: the owner serializes calls.
#pragma once

#include <cstdint>
#include <map>
#include <memory_resource>
#include <optional>
#include <set>
#include <utility>

namespace kvtier {

class ExtentAllocator {
 public:
  struct Extent {
    uint64_t offset = 0;  // bytes from the start of the range
    uint64_t length = 0;  // bytes, a multiple of unit_bytes
  };

  ExtentAllocator(uint64_t capacity_bytes, uint64_t unit_bytes = 4096);
  ExtentAllocator(const ExtentAllocator&) = delete;
  ExtentAllocator& operator=(const ExtentAllocator&) = delete;

  // The smallest free extent that fits `bytes`, or nullopt when none does (free space may still be
  // larger in total but fragmented).
  std::optional<Extent> Allocate(uint64_t bytes);
  // Returns an extent obtained from Allocate; neighbours are merged.
  void Free(const Extent& extent);

  uint64_t capacity_bytes() const { return total_units_ * unit_; }
  uint64_t used_bytes() const { return used_units_ * unit_; }
  uint64_t unit_bytes() const { return unit_; }
  uint64_t largest_free_bytes() const;
  size_t free_extents() const { return by_start_.size(); }
  uint64_t RoundUp(uint64_t bytes) const { return (bytes + unit_ - 1) / unit_ * unit_; }

 private:
  using Units = uint64_t;
  void InsertFree(Units start, Units len);
  void EraseFree(std::map<Units, Units>::iterator it);

  const Units unit_;
  const Units total_units_;
  Units used_units_ = 0;
  std::pmr::unsynchronized_pool_resource pool_;
  std::pmr::map<Units, Units> by_start_{&pool_};                 // start -> length
  std::pmr::set<std::pair<Units, Units>> by_size_{&pool_};       // (length, start)
};

}  // namespace kvtier
