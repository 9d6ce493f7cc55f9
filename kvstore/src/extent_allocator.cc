#include "kvtier/kvstore/extent_allocator.h"

#include <cassert>
#include <iterator>

namespace kvtier {

ExtentAllocator::ExtentAllocator(uint64_t capacity_bytes, uint64_t unit_bytes)
    : unit_(unit_bytes), total_units_(capacity_bytes / unit_bytes) {
  if (total_units_ > 0) InsertFree(0, total_units_);
}

void ExtentAllocator::InsertFree(Units start, Units len) {
  by_start_.emplace(start, len);
  by_size_.emplace(len, start);
}

void ExtentAllocator::EraseFree(std::map<Units, Units>::iterator it) {
  by_size_.erase({it->second, it->first});
  by_start_.erase(it);
}

std::optional<ExtentAllocator::Extent> ExtentAllocator::Allocate(uint64_t bytes) {
  const Units need = bytes == 0 ? 1 : (bytes + unit_ - 1) / unit_;
  auto fit = by_size_.lower_bound({need, 0});
  if (fit == by_size_.end()) return std::nullopt;
  const Units len = fit->first;
  const Units start = fit->second;
  by_size_.erase(fit);
  by_start_.erase(start);
  if (len > need) InsertFree(start + need, len - need);
  used_units_ += need;
  return Extent{start * unit_, need * unit_};
}

void ExtentAllocator::Free(const Extent& extent) {
  Units start = extent.offset / unit_;
  Units len = extent.length / unit_;
  assert(extent.offset % unit_ == 0 && extent.length % unit_ == 0 && len > 0);
  used_units_ -= len;
  auto next = by_start_.lower_bound(start);
  if (next != by_start_.end() && next->first == start + len) {
    len += next->second;
    auto after = std::next(next);
    EraseFree(next);
    next = after;
  }
  if (next != by_start_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      len += prev->second;
      EraseFree(prev);
    }
  }
  InsertFree(start, len);
}

uint64_t ExtentAllocator::largest_free_bytes() const {
  return by_size_.empty() ? 0 : by_size_.rbegin()->first * unit_;
}

}  // namespace kvtier
