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

HostTier::HostTier(HostArena arena) : arena_(std::move(arena)), space_(arena_.size(), "host") {}

std::span<std::byte> HostTier::Map(const Placement& placement) {
  return {arena_.data() + placement.offset, placement.length};
}

Status HostTier::Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) {
  KVTIER_RETURN_IF_ERROR(space_.CheckWithin(placement, offset, data.size(), "write"));
  std::memcpy(arena_.data() + placement.offset + offset, data.data(), data.size());
  return Status::Ok();
}

Status HostTier::Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) {
  KVTIER_RETURN_IF_ERROR(space_.CheckWithin(placement, offset, out.size(), "read"));
  std::memcpy(out.data(), arena_.data() + placement.offset + offset, out.size());
  return Status::Ok();
}

}  // namespace kvtier
