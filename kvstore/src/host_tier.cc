#include "kvtier/kvstore/host_tier.h"

#include <cstring>

namespace kvtier {

std::string_view TierName(TierKind kind) {
  switch (kind) {
    case TierKind::kHost: return "host";
    case TierKind::kNvme: return "nvme";
    case TierKind::kGpu: return "gpu";
    case TierKind::kNone: return "none";
  }
  return "none";
}

Result<std::unique_ptr<HostTier>> HostTier::Create(const HostArenaOptions& options) {
  auto arena = HostArena::Create(options);
  if (!arena.ok()) return arena.status();
  return std::unique_ptr<HostTier>(new HostTier(std::move(arena).value()));
}

HostTier::HostTier(HostArena arena) : arena_(std::move(arena)), allocator_(arena_.size()) {}

uint64_t HostTier::capacity_bytes() const { return arena_.size(); }

uint64_t HostTier::used_bytes() const {
  std::lock_guard lock(mu_);
  return allocator_.used_bytes();
}

uint64_t HostTier::largest_free_bytes() const {
  std::lock_guard lock(mu_);
  return allocator_.largest_free_bytes();
}

Result<Placement> HostTier::Allocate(uint64_t bytes) {
  std::lock_guard lock(mu_);
  auto extent = allocator_.Allocate(bytes);
  if (!extent) return ResourceExhausted("host tier has no free extent of " + std::to_string(bytes) + " bytes");
  return Placement{extent->offset, extent->length};
}

void HostTier::Free(const Placement& placement) {
  std::lock_guard lock(mu_);
  allocator_.Free({placement.offset, placement.length});
}

std::span<std::byte> HostTier::Map(const Placement& placement) {
  return {arena_.data() + placement.offset, placement.length};
}

Status HostTier::Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) {
  if (offset > placement.length || data.size() > placement.length - offset) {
    return InvalidArgument("write past the end of a host placement");
  }
  std::memcpy(arena_.data() + placement.offset + offset, data.data(), data.size());
  return Status::Ok();
}

Status HostTier::Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) {
  if (offset > placement.length || out.size() > placement.length - offset) {
    return InvalidArgument("read past the end of a host placement");
  }
  std::memcpy(out.data(), arena_.data() + placement.offset + offset, out.size());
  return Status::Ok();
}

}  // namespace kvtier
