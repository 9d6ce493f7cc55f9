// Store: the kvtier engine. It owns the tiers, the index of committed chunks, namespaces and
// fingerprints, leases and eviction, and enforces the data-model rules of DESIGN §2-§4:
// chunks are immutable, a second put of a committed key is a no-op, namespaces never see each
// other's chunks, a chunk is read only with the fingerprint it was stored with, token ids are checked
// when the reader supplies them, and payload checksums are verified on every read (a corrupt chunk is
// dropped and answered as a miss).
//
// Thread-safety: every public method may be called from any thread. Index, policy and counters are
// guarded by one mutex held only for O(1)/O(log n) bookkeeping; payload bytes are copied and
// checksummed outside it. PendingPut and ChunkRef are single-owner handles (movable, not shared).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvtier/api/types.h"
#include "kvtier/kvstore/chunk_entry.h"
#include "kvtier/kvstore/eviction_policy.h"
#include "kvtier/kvstore/tier.h"

namespace kvtier {

class ChunkTable;
class EntryPool;

// Codec ids known to the store; values equal the proto enum kvtier.v1.Codec.
enum class CodecId : uint8_t { kUnspecified = 0, kRaw = 1 };

struct StoreOptions {
  uint64_t host_capacity_bytes = 4ull << 30;  // host DRAM arena; reserved and pre-faulted at start
  bool host_huge_pages = true;                // back the arena with huge pages when the system has them
  bool host_prefault = true;                  // fault the arena in at start (slow start, fast puts)
  uint64_t max_chunk_bytes = 256ull << 20;    // largest payload accepted by a put
  uint32_t max_batch = 1024;                  // most keys in one Get/Lookup/Exists/Delete
  uint32_t max_lease_ttl_ms = 600000;         // leases asked for longer are cut to this (10 min)
  uint32_t max_namespaces = 4096;             // distinct namespaces ever written; bounds memory
  uint32_t max_fingerprints = 4096;           // distinct model fingerprints ever written
  // Monotonic clock in nanoseconds, for leases. Empty: std::chrono::steady_clock. Tests inject one.
  std::function<int64_t()> now_ns;

  Status Validate() const;
};

// Resolved namespace and fingerprint of one request; cheap to copy. Obtained from Store::OpenScope.
struct Scope {
  uint32_t ns_id = 0;  // 0: a namespace nothing was ever written to (every read misses)
  uint32_t fp_id = 0;
  ModelFingerprint fingerprint;
};

struct PutSpec {
  ChunkKey key;
  std::span<const uint32_t> token_ids;  // 1..fingerprint.chunk_tokens
  CodecId codec = CodecId::kRaw;
  uint64_t payload_bytes = 0;
  uint64_t checksum = 0;                // Checksum64 of the payload
  uint32_t base_position = 0;
  bool pin = false;
};

struct PutOutcome {
  bool already_present = false;
  TierKind tier = TierKind::kNone;
};

class Store;

// Space reserved for one chunk being put. Append the payload, then Commit; destroying an uncommitted
// PendingPut releases the space and leaves nothing visible. When the key was already committed,
// already_present() is true and appended bytes are only counted (the stream still has to be drained).
class PendingPut {
 public:
  PendingPut() = default;
  PendingPut(PendingPut&& other) noexcept;
  PendingPut& operator=(PendingPut&& other) noexcept;
  ~PendingPut();

  bool active() const { return store_ != nullptr; }
  bool already_present() const { return entry_ == nullptr; }
  uint64_t expected_bytes() const { return expected_; }
  uint64_t received_bytes() const { return received_; }
  bool complete() const { return received_ == expected_; }
  const ChunkKey& key() const { return key_; }

  // INVALID_ARGUMENT if the data goes past the declared payload size.
  Status Append(std::span<const std::byte> data);
  // Publishes the chunk. FAILED_PRECONDITION before all bytes arrived; DATA_LOSS when the checksum
  // does not match (nothing is stored). The handle is spent afterwards.
  Result<PutOutcome> Commit();

 private:
  friend class Store;
  void Abort();

  Store* store_ = nullptr;
  ChunkEntry* entry_ = nullptr;  // reserved, not indexed; nullptr when already present
  std::byte* payload_ = nullptr;
  ChunkKey key_;
  uint64_t expected_ = 0;
  uint64_t received_ = 0;
  uint64_t declared_checksum_ = 0;
  ChecksumStream checksum_;
};

// A reader's hold on a committed chunk: its bytes stay valid (even if the chunk is deleted or
// evicted meanwhile) until the ChunkRef is destroyed. An empty ChunkRef is a miss.
class ChunkRef {
 public:
  ChunkRef() = default;
  ChunkRef(ChunkRef&& other) noexcept;
  ChunkRef& operator=(ChunkRef&& other) noexcept;
  ~ChunkRef();

  explicit operator bool() const { return entry_ != nullptr; }
  const ChunkEntry& entry() const { return *entry_; }
  std::span<const std::byte> payload() const { return payload_; }
  std::span<const uint32_t> token_ids() const { return tokens_; }

 private:
  friend class Store;
  friend class StoreTestPeer;
  void Reset();

  Store* store_ = nullptr;
  ChunkEntry* entry_ = nullptr;
  std::span<const std::byte> payload_;
  std::span<const uint32_t> tokens_;
};

struct TierSnapshot {
  TierKind kind = TierKind::kNone;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t chunks = 0;
  uint64_t pinned_chunks = 0;
  uint64_t hits = 0;
  uint64_t evictions = 0;
};

struct StoreStats {
  std::vector<TierSnapshot> tiers;
  uint64_t misses = 0;
  uint64_t checksum_failures = 0;
  uint64_t token_mismatches = 0;
  uint32_t namespaces = 0;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(StoreOptions options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const StoreOptions& options() const { return options_; }
  const Tier& host_tier() const { return *host_; }

  // Validates the namespace (1..128 bytes) and fingerprint. `for_write` registers both if new
  // (RESOURCE_EXHAUSTED past max_namespaces/max_fingerprints); reads of unknown ones just miss.
  Result<Scope> OpenScope(std::string_view name_space, const ModelFingerprint& fingerprint, bool for_write);

  // Validates the spec against the scope's fingerprint and limits and reserves space, evicting LRU
  // chunks as needed. RESOURCE_EXHAUSTED (naming the limit) when nothing evictable is left.
  Result<PendingPut> BeginPut(const Scope& scope, const PutSpec& spec);

  // A hit holds the chunk; a miss is an empty ChunkRef. `expected_tokens`, when not empty, must
  // equal the stored token ids or the answer is a miss. INVALID_ARGUMENT when the chunk was stored
  // under another fingerprint.
  Result<ChunkRef> Get(const Scope& scope, const ChunkKey& key, std::span<const uint32_t> expected_tokens = {});

  // Number of leading keys present; `tiers` gets one entry per key (kNone for a miss). With
  // lease_ttl_ms > 0 the leading hits are leased (not evicted) for min(lease_ttl_ms, max_lease_ttl_ms).
  Result<uint32_t> Lookup(const Scope& scope, std::span<const ChunkKey> keys, uint32_t lease_ttl_ms,
                          std::vector<TierKind>* tiers);
  Result<std::vector<bool>> Exists(const Scope& scope, std::span<const ChunkKey> keys);
  Result<uint32_t> Delete(const Scope& scope, std::span<const ChunkKey> keys);

  StoreStats Stats() const;
  // INVALID_ARGUMENT unless 1 <= keys <= max_batch.
  Status CheckBatch(size_t keys) const;

 private:
  friend class PendingPut;
  friend class ChunkRef;
  friend class StoreTestPeer;

  explicit Store(StoreOptions options);
  int64_t NowNs() const;

  Status ValidateSpec(const Scope& scope, const PutSpec& spec) const;
  // Guarded: the caller holds mu_.
  Result<Placement> AllocateLocked(uint64_t bytes);
  bool EvictableLocked(const ChunkEntry& e, int64_t now) const;
  Status ExhaustedLocked(uint64_t bytes) const;
  Status CheckFingerprintLocked(const Scope& scope, const ChunkEntry& e) const;
  void RemoveLocked(ChunkEntry* e);
  void UnrefLocked(ChunkEntry* e);
  void ReleaseEntryLocked(ChunkEntry* e);
  void Unref(ChunkEntry* e);
  Result<PutOutcome> CommitPut(PendingPut* put);
  void AbortPut(PendingPut* put);
  ChunkRef MakeRef(ChunkEntry* e);

  const StoreOptions options_;
  std::unique_ptr<Tier> host_;

  mutable std::mutex mu_;
  std::unique_ptr<ChunkTable> table_;                             // guarded by mu_
  std::unique_ptr<EntryPool> pool_;                               // guarded by mu_
  std::unique_ptr<EvictionPolicy> policy_;                        // guarded by mu_
  std::unordered_map<std::string, uint32_t> namespaces_;          // guarded by mu_
  std::unordered_map<ChunkKey, uint32_t, ChunkKeyHasher> fingerprint_ids_;  // by digest; guarded by mu_
  std::vector<ModelFingerprint> fingerprints_;                    // by id - 1; guarded by mu_
  uint64_t host_chunks_ = 0;                                      // guarded by mu_
  uint64_t host_pinned_chunks_ = 0;                               // guarded by mu_
  uint64_t reservations_ = 0;                                     // puts in flight; guarded by mu_

  std::atomic<uint64_t> host_hits_{0};
  std::atomic<uint64_t> host_evictions_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> checksum_failures_{0};
  std::atomic<uint64_t> token_mismatches_{0};
};

}  // namespace kvtier
