// NvmeTier: the NVMe tier, a log of large regions in one preallocated file (CacheLib BlockCache style).
//
// Records (DISK_FORMAT.md) are appended to the open region; a full region is sealed and the next free one
// opened. Space comes back a region at a time: the Store picks a victim region (FIFO or LRU order, never
// one being read), drops or reinserts its chunks, and resets it, which bumps its generation so index
// entries and records of its previous life can never be mistaken for current ones. A region's generation
// is persisted before anything new is written into it.
//
// Thread-safe: region bookkeeping is guarded by an internal mutex; I/O runs outside it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvtier/kvstore/block_file.h"
#include "kvtier/kvstore/tier.h"
#include "meta_store.h"
#include "nvme/disk_format.h"

namespace kvtier {

enum class RegionReclaim : uint8_t { kFifo, kLru };

struct NvmeTierOptions {
  uint64_t capacity_bytes = 0;          // data file size; whole regions only
  uint64_t region_bytes = 64ull << 20;  // a record never spans regions, so this bounds the largest chunk
  RegionReclaim reclaim = RegionReclaim::kFifo;
};

// One record to write: the header fields plus the body, already laid out as [tokens][pad][payload].
struct RecordWrite {
  Placement placement;  // from Allocate
  disk::RecordHeader header;
  std::span<const std::byte> body;  // kDiskAlign-aligned memory, length padded to kDiskAlign
};

class NvmeTier final : public Tier {
 public:
  // `generations` restores each region's generation from the meta store (absent: 0).
  NvmeTier(std::unique_ptr<BlockFile> file, MetaStore* meta, const NvmeTierOptions& options,
           const std::map<uint32_t, uint64_t>& generations);

  TierKind kind() const override { return TierKind::kNvme; }
  uint64_t capacity_bytes() const override;
  uint64_t used_bytes() const override;  // bytes of live records
  // The region of the placement cannot be reclaimed until FinishWrite(placement) says its record is
  // written and indexed (or abandoned).
  Result<Placement> Allocate(uint64_t bytes) override;
  void FinishWrite(const Placement& placement);
  void Free(const Placement& placement) override;
  std::span<std::byte> Map(const Placement&) override { return {}; }
  Status Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) override;
  Status Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) override;

  // Writes many records with one submission (2 I/Os each: header block, body).
  Status WriteRecords(std::span<RecordWrite> records);
  // Reads a record's header into `header` and its body into `body` (aligned, block-padded length).
  Status ReadRecord(const Placement& placement, disk::RecordHeader* header, std::span<std::byte> body);

  // Accounts a chunk found in the index at start-up. False if its generation is stale.
  bool Adopt(const Placement& placement);
  uint32_t RegionOf(const Placement& p) const { return static_cast<uint32_t>(p.offset / options_.region_bytes); }
  uint64_t next_sequence() { return sequence_.fetch_add(1, std::memory_order_relaxed); }

  // Readers pin a region against reclaim while they read from it.
  bool BeginRead(const Placement& placement);  // false: the region was reset, the data is gone
  void EndRead(const Placement& placement);
  void NoteHit(const Placement& placement);

  // A sealed region to reclaim (FIFO: oldest sealed; LRU: least recently hit), none being read or written.
  std::optional<uint32_t> PickVictim();
  // Empties `region`: bumps and persists its generation; every placement in it becomes stale.
  Status ResetRegion(uint32_t region);

  struct RegionCounts {
    uint32_t free = 0, open = 0, sealed = 0;
  };
  RegionCounts CountRegions() const;
  bool direct_io() const { return file_->direct_io(); }
  BlockFile* file() { return file_.get(); }
  uint64_t region_bytes() const { return options_.region_bytes; }

 private:
  enum class State : uint8_t { kFree, kOpen, kSealed };
  struct Region {
    State state = State::kFree;
    uint64_t generation = 0;
    uint64_t fill = 0;        // append offset within the region
    uint64_t live_bytes = 0;  // bytes of records still referenced
    uint64_t sealed_seq = 0;  // FIFO order
    uint64_t last_hit = 0;    // LRU order
    uint32_t readers = 0;
    uint32_t writers = 0;     // allocated records not yet written and indexed
  };
  Status OpenRegionLocked();

  std::unique_ptr<BlockFile> file_;
  MetaStore* const meta_;
  const NvmeTierOptions options_;
  mutable std::mutex mu_;
  std::vector<Region> regions_;  // guarded by mu_
  int64_t open_ = -1;            // guarded by mu_
  uint64_t clock_ = 0;           // guarded by mu_
  uint64_t live_bytes_ = 0;      // guarded by mu_
  std::atomic<uint64_t> sequence_{1};
};

}  // namespace kvtier
