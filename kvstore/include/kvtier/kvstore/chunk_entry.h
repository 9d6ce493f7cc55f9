// ChunkEntry: the Store's record of one committed (or reserved) chunk, and the hook eviction policies
// thread their lists through.
//
// Entries are pooled by the Store (no malloc per chunk). Identity and metadata are written once before
// the entry is published in the index and are read-only afterwards. A chunk has a copy in host DRAM, on
// the NVMe tier, in GPU memory, or any combination. `refs` counts the index's own reference plus one per
// holder (a reader with a ChunkRef, the demoter, a copy to or from the GPU); the host copy is never
// dropped while a holder exists, the GPU copy never while a copy out of it is in flight (`gpu_copies`),
// and the placements are freed when refs drops to zero, so a chunk deleted while being streamed stays
// intact until the reader lets go. Fields marked "guarded by Store::mu_" are only touched under the
// Store's mutex.
#pragma once

#include <atomic>
#include <cstdint>

#include "kvtier/api/types.h"
#include "kvtier/kvstore/tier.h"

namespace kvtier {

struct ChunkEntry {
  // --- written once before publication, then read-only ---
  ChunkKey key;
  uint32_t ns_id = 0;
  uint32_t fp_id = 0;
  uint32_t num_tokens = 0;
  uint32_t base_position = 0;
  uint8_t codec = 0;
  bool pinned = false;
  uint8_t host_pool = 0;        // which host arena holds its host copy (the namespace's; 0 = main)
  uint64_t payload_bytes = 0;
  uint64_t checksum = 0;
  uint64_t payload_offset = 0;  // from the start of the body: [token ids, u32 each][pad to 64][payload]

  // --- shared ---
  std::atomic<uint32_t> refs{0};
  std::atomic<int64_t> lease_until_ns{0};  // not evictable before this (monotonic clock)

  // --- guarded by Store::mu_ ---
  Placement host;             // the body in host DRAM, valid when in_host
  Placement disk;             // the record on the NVMe tier, valid when on_disk
  Placement gpu;              // the body in GPU memory, valid when in_gpu
  bool in_host = false;
  bool on_disk = false;
  bool in_gpu = false;
  bool indexed = false;
  bool demoting = false;           // a copy to the NVMe tier is being written
  bool admission_refused = false;  // the admission policy said no; do not ask again
  bool hit_on_disk = false;        // read from the NVMe tier since written there (reinsertion)
  uint32_t hits = 0;
  ChunkEntry* policy_prev = nullptr;  // owned by the eviction policy
  ChunkEntry* policy_next = nullptr;
  ChunkEntry* dirty_prev = nullptr;   // the Store's list of host chunks with no disk copy yet
  ChunkEntry* dirty_next = nullptr;
  bool dirty = false;                 // linked in that list
  ChunkEntry* gpu_prev = nullptr;     // the Store's LRU list of unpinned GPU copies
  ChunkEntry* gpu_next = nullptr;
  bool gpu_listed = false;            // linked in that list
  uint32_t gpu_copies = 0;            // copies out of the GPU placement in flight (promotions, demotion)
  uint32_t lease_slot = kNoLeaseSlot;  // index in the Store's list of leased chunks, if listed

  static constexpr uint32_t kNoLeaseSlot = UINT32_MAX;

  // Where a read is served from: host DRAM when there is a copy there, else the GPU copy, else the disk's.
  TierKind tier() const {
    return in_host ? TierKind::kHost : in_gpu ? TierKind::kGpu : on_disk ? TierKind::kNvme : TierKind::kNone;
  }

  void Reset() {
    key = {};
    ns_id = fp_id = num_tokens = base_position = 0;
    codec = 0;
    pinned = false;
    host_pool = 0;
    payload_bytes = checksum = payload_offset = 0;
    refs.store(0, std::memory_order_relaxed);
    lease_until_ns.store(0, std::memory_order_relaxed);
    host = disk = gpu = {};
    in_host = on_disk = in_gpu = indexed = demoting = admission_refused = hit_on_disk = false;
    hits = 0;
    policy_prev = policy_next = nullptr;
    dirty_prev = dirty_next = nullptr;
    dirty = false;
    gpu_prev = gpu_next = nullptr;
    gpu_listed = false;
    gpu_copies = 0;
    lease_slot = kNoLeaseSlot;
  }
};

}  // namespace kvtier
