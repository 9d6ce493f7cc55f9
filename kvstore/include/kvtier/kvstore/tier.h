// Tier: a place where chunk payloads live (host DRAM now; NVMe and GPU plug in behind the same
// interface). The Store owns the index and decides what goes where; a tier owns only bytes.
//
// A tier hands out Placements (an extent of its address space), accepts writes into them and serves
// reads from them. Byte-addressable tiers also expose the placement's memory directly (Map), which the
// Store uses to avoid copies. Implementations are thread-safe: Allocate/Free may be called from many
// threads, and Read/Write/Map of distinct placements never conflict.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "kvtier/api/status.h"

namespace kvtier {

// Values equal the proto enum kvtier.v1.Tier.
enum class TierKind : uint8_t { kNone = 0, kHost = 1, kNvme = 2, kGpu = 3 };
std::string_view TierName(TierKind kind);  // "host", "nvme", "gpu": the `tier` metric label

struct Placement {
  uint64_t offset = 0;      // in the tier's address space
  uint64_t length = 0;      // bytes reserved (>= bytes asked, rounded to the tier's unit)
  uint64_t generation = 0;  // for log-structured tiers: the region generation it was written in
};

class Tier {
 public:
  virtual ~Tier() = default;

  virtual TierKind kind() const = 0;
  virtual uint64_t capacity_bytes() const = 0;
  virtual uint64_t used_bytes() const = 0;

  // Reserves `bytes`. RESOURCE_EXHAUSTED when no free extent is large enough; the Store then evicts
  // and tries again.
  virtual Result<Placement> Allocate(uint64_t bytes) = 0;
  virtual void Free(const Placement& placement) = 0;

  // Direct access for byte-addressable tiers; an empty span for tiers that need I/O.
  virtual std::span<std::byte> Map(const Placement& placement) = 0;
  virtual Status Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) = 0;
  virtual Status Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) = 0;
};

}  // namespace kvtier
