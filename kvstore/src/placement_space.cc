#include "kvtier/kvstore/placement_space.h"

namespace kvtier {

uint64_t PlacementSpace::used_bytes() const {
  std::lock_guard lock(mu_);
  return allocator_.used_bytes();
}

uint64_t PlacementSpace::largest_free_bytes() const {
  std::lock_guard lock(mu_);
  return allocator_.largest_free_bytes();
}

Result<Placement> PlacementSpace::Allocate(uint64_t bytes) {
  std::lock_guard lock(mu_);
  auto extent = allocator_.Allocate(bytes);
  if (!extent) return ResourceExhausted(tier_ + " tier has no free extent of " + std::to_string(bytes) + " bytes");
  return Placement{extent->offset, extent->length};
}

void PlacementSpace::Free(const Placement& placement) {
  std::lock_guard lock(mu_);
  allocator_.Free({placement.offset, placement.length});
}

Status PlacementSpace::CheckWithin(const Placement& placement, uint64_t offset, uint64_t bytes,
                                   const char* what) const {
  if (offset <= placement.length && bytes <= placement.length - offset) return Status::Ok();
  return InvalidArgument(std::string(what) + " past the end of a " + tier_ + " placement");
}

}  // namespace kvtier
