// ChunkEntry: the Store's record of one committed (or reserved) chunk, and the hook eviction policies
// thread their lists through.
//
// Entries are pooled by the Store (no malloc per chunk). Identity and metadata are written once before
// the entry is published in the index and are read-only afterwards. `refs` counts the index's own
// reference plus one per reader holding a ChunkRef; the placement is freed when it drops to zero, so a
// chunk deleted or evicted while being streamed stays intact until the reader lets go. Fields marked
// "guarded by Store::mu_" are only touched under the Store's mutex.
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
  TierKind tier = TierKind::kNone;
  uint64_t payload_bytes = 0;
  uint64_t checksum = 0;
  Placement placement;          // [token ids, u32 each][pad to 64 bytes][payload]
  uint64_t payload_offset = 0;  // from the start of the placement

  // --- shared ---
  std::atomic<uint32_t> refs{0};
  std::atomic<int64_t> lease_until_ns{0};  // not evictable before this (monotonic clock)

  // --- guarded by Store::mu_ ---
  bool indexed = false;
  ChunkEntry* policy_prev = nullptr;  // owned by the eviction policy
  ChunkEntry* policy_next = nullptr;

  void Reset() {
    key = {};
    ns_id = fp_id = num_tokens = base_position = 0;
    codec = 0;
    pinned = false;
    tier = TierKind::kNone;
    payload_bytes = checksum = payload_offset = 0;
    placement = {};
    refs.store(0, std::memory_order_relaxed);
    lease_until_ns.store(0, std::memory_order_relaxed);
    indexed = false;
    policy_prev = policy_next = nullptr;
  }
};

}  // namespace kvtier
