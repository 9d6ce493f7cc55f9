// Store: the kvtier engine. It owns the tiers (host DRAM, and the NVMe and GPU tiers when configured), the index
// of committed chunks, namespaces and fingerprints, leases, eviction, demotion and promotion, and enforces
// the data-model rules of DESIGN §2-§4:
// chunks are immutable, a second put of a committed key is a no-op, namespaces never see each
// other's chunks, a chunk is read only with the fingerprint it was stored with, token ids are checked
// when the reader supplies them, and payload checksums are verified on every read (a corrupt chunk is
// dropped and answered as a miss).
//
// With an NVMe tier, a background demoter writes the coldest host chunks to disk ahead of need (above a
// host watermark); evicting such a chunk from DRAM then only drops its host copy, and a chunk read back
// from disk and evicted again is not rewritten. A read of a disk-only chunk promotes it to DRAM after
// verifying the record. The disk index lives in RocksDB, so a restart is warm. Repeated disk errors
// disable the NVMe tier and the host tier keeps serving.
//
// With a GPU tier, a put that asks for it (or every put, by policy) also gets a GPU copy when it commits.
// The GPU copy is one more copy of the chunk, like the disk's: evicting the host copy of such a chunk only
// drops that copy, a read of a GPU-only chunk copies it back to DRAM first, and a GPU chunk evicted to make
// room on the GPU moves to DRAM when it has no other copy (dropped, and counted, only when DRAM has no room
// for it). A failed copy never loses a chunk; repeated copy errors disable the GPU tier. When a GPU is
// present the host arenas are registered with CUDA (pinned), so copies need no staging.
//
// Thread-safety: every public method may be called from any thread. Index, policy and counters are
// guarded by one mutex held only for bookkeeping; payload bytes are copied, checksummed and read from
// or written to disk outside it. PendingPut and ChunkRef are single-owner handles (movable, not shared).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kvtier/api/types.h"
#include "kvtier/codec/codec.h"
#include "kvtier/kvstore/admission_policy.h"
#include "kvtier/kvstore/block_file.h"
#include "kvtier/kvstore/chunk_entry.h"
#include "kvtier/kvstore/device_memory.h"
#include "kvtier/kvstore/eviction_policy.h"
#include "kvtier/kvstore/host_arena.h"
#include "kvtier/kvstore/profile_registry.h"
#include "kvtier/kvstore/tier.h"
#include "kvtier/kvstore/variant_index.h"

namespace kvtier {

class ChunkTable;
struct DiskVariantRecord;
class DirtyList;
class EntryPool;
class GpuList;
class GpuTier;
class HostTier;
class MetaStore;
class NvmeTier;
namespace gpu {
class HostRegistration;
}

// How a chunk's payload is encoded; values equal the proto enum kvtier.v1.Codec. Encoded payloads are
// codec containers, checked (header, shape, referenced profile) before they become visible.
using CodecId = codec::CodecId;

// The NVMe tier (DESIGN §4). Off unless `path` is set.
struct DiskOptions {
  std::string path;                          // directory for kvtier.data and index/; empty = no NVMe tier
  uint64_t capacity_bytes = 16ull << 30;     // data file size, preallocated; whole regions are used
  uint64_t region_bytes = 64ull << 20;       // unit of append and reclaim; also the largest record
  uint32_t queue_depth = 32;                 // io_uring I/Os in flight per submission
  bool direct_io = true;                     // O_DIRECT (falls back to buffered I/O where refused)
  std::string reclaim = "fifo";              // region reclaim order: fifo or lru
  bool reinsert_hits = true;                 // rewrite chunks read while in a region being reclaimed
  std::string admission = "admit-all";       // admit-all, seen-twice or write-budget
  uint64_t write_budget_bytes_per_day = 0;   // for write-budget
  double demote_watermark = 0.9;             // demote cold host chunks once host usage exceeds this share
  uint64_t demote_batch_bytes = 8ull << 20;  // bytes written per demotion batch
  uint32_t max_consecutive_errors = 8;       // I/O errors in a row that disable the tier
  bool flush_on_shutdown = true;             // a clean stop writes every DRAM chunk to disk: restarts are warm
  bool background_demotion = true;           // a thread demotes above the watermark; off: only puts that
                                             // need room demote (deterministic, for tests)
  // Test hook: wraps the data file (fault injection). Empty in production.
  std::function<std::unique_ptr<BlockFile>(std::unique_ptr<BlockFile>)> wrap_file;

  bool enabled() const { return !path.empty(); }
  Status Validate() const;
};

// The GPU tier (DESIGN §4). Off unless capacity_bytes > 0. Without a usable GPU (or when reserving the
// arena fails) the store logs why and runs without it: a GPU tier is never a reason not to start.
struct GpuOptions {
  uint64_t capacity_bytes = 0;           // device arena reserved at start; 0 = no GPU tier
  int device = 0;                        // CUDA device ordinal
  // Which puts get a GPU copy: "on-request" (those whose PutSpec::prefer_tier is kGpu) or "all".
  std::string placement = "on-request";
  uint32_t max_consecutive_errors = 8;   // copy errors in a row that disable the tier
  // Test hook: reserves the device memory instead of CUDA (an emulation with fault injection); the GPU
  // probe is then skipped. Empty in production.
  std::function<Result<std::unique_ptr<DeviceMemory>>(int device, uint64_t bytes)> open_device;

  bool enabled() const { return capacity_bytes > 0; }
  Status Validate() const;
};

struct StoreOptions {
  uint64_t host_capacity_bytes = 4ull << 30;  // host DRAM arena; reserved and pre-faulted at start
  bool host_huge_pages = true;                // back the arena with huge pages when the system has them
  bool host_prefault = true;                  // fault the arena in at start (slow start, fast puts)
  // When the GPU tier is on, register the host arenas with CUDA (cudaHostRegister, portable) at start, so
  // copies between host chunks and the GPU tier are DMA without staging. Costs a pinning pass at start (like
  // the pre-fault). Failure is logged; the arenas then stay pageable.
  bool host_cuda_register = true;
  uint64_t max_chunk_bytes = 256ull << 20;    // largest payload accepted by a put
  uint32_t max_batch = 1024;                  // most keys in one Get/Lookup/Exists/Delete
  uint32_t max_lease_ttl_ms = 600000;         // leases asked for longer are cut to this (10 min)
  uint32_t max_namespaces = 4096;             // distinct namespaces ever written; bounds memory
  uint32_t max_fingerprints = 4096;           // distinct model fingerprints ever written
  ProfileLimits profiles;                     // shared cachegen profiles per namespace
  // Payload bytes one namespace may hold (all tiers, puts in flight included); 0 = no quota. A put past
  // its namespace's quota is RESOURCE_EXHAUSTED naming the quota; the namespace's chunks still leave by
  // eviction and deletion, which frees its quota.
  uint64_t default_quota_bytes = 0;
  std::map<std::string, uint64_t> namespace_quota_bytes;  // per namespace, overriding the default
  // Namespaces whose host copies live in their own shareable arena (a sealed memfd) of this size
  // instead of the main arena, so same-host clients of that namespace may map it (kvstore/SHM.md).
  // Each arena is reserved and pre-faulted like the main one; at most 64.
  std::map<std::string, uint64_t> shared_arena_bytes;
  // Monotonic clock in nanoseconds, for leases. Empty: std::chrono::steady_clock. Tests inject one.
  std::function<int64_t()> now_ns;
  DiskOptions disk;
  GpuOptions gpu;
  // Variants of content-mode chunks (variant_index.h): how many per chunk, and what a full group admits.
  // With the NVMe tier each admitted variant's metadata is kept in the disk index too, and a restart
  // re-indexes the variants whose chunks are on disk (newest puts first, up to max_variants per group).
  // Without it the index lives in memory only: after a restart variants must be put again.
  VariantOptions variants;

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
  // Set: a variant of a content-mode chunk. `key` must be VariantKey(content_key, context) and
  // content_key the content key of token_ids; sizes and values are checked (VariantMeta::Validate).
  std::shared_ptr<const VariantMeta> variant;
  // kGpu: also place a copy on the GPU tier at commit (without one, the chunk lands in host DRAM only).
  // kNone and kHost: host DRAM. kNvme is INVALID_ARGUMENT: chunks reach the NVMe tier by demotion.
  TierKind prefer_tier = TierKind::kNone;
};

struct PutOutcome {
  bool already_present = false;
  TierKind tier = TierKind::kNone;  // kGpu when the chunk got a GPU copy (it is in host DRAM as well)
  bool variant_admitted = true;  // false: keep-existing refused a variant for a full group (nothing stored)
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
  CodecId codec_ = CodecId::kRaw;
  codec::KvShape shape_;  // what an encoded payload must decode to
  std::shared_ptr<const VariantMeta> variant_;  // a variant put: indexed on commit
  bool variant_refused_ = false;   // keep-existing refused it before any byte was stored (drain only)
  bool variant_admitted_ = true;   // what the outcome says when nothing is written
  bool to_gpu_ = false;            // copy it to the GPU tier at commit
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

// A variant chosen for a new context (Store::SelectVariant). An empty ref is a miss.
struct VariantChoice {
  ChunkRef ref;
  ChunkKey variant_key;
  std::shared_ptr<const VariantMeta> meta;
  ContextMatch match;
  GroupContextHint group;  // over the group's variants computed behind a context
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

struct DiskStats {
  bool enabled = false;         // an NVMe tier is configured
  bool direct_io = false;
  bool failed = false;          // disabled after repeated I/O errors
  bool full = false;            // writes stopped: the device or index ran out of space
  uint64_t read_bytes = 0, write_bytes = 0;
  uint64_t read_errors = 0, write_errors = 0;
  uint32_t regions_free = 0, regions_open = 0, regions_sealed = 0;
  uint64_t promotions = 0, demotions = 0, admission_rejected = 0, reinsertions = 0;
  uint64_t variants_restored = 0;         // variants re-indexed from the disk index at start
  uint64_t variant_records_skipped = 0;   // variant records at start that were corrupt or inconsistent
};

struct GpuStats {
  bool enabled = false;         // a GPU tier is running
  bool failed = false;          // disabled after repeated copy errors
  std::string unavailable;      // a GPU tier was configured but is not running: why
  std::string device;           // what backs it, e.g. "NVIDIA H200 (device 0)"
  uint64_t read_bytes = 0, write_bytes = 0;    // copied from (read) and to (write) the device
  uint64_t read_errors = 0, write_errors = 0;  // failed copies
  uint64_t promotions = 0;      // GPU-only chunks copied back to DRAM for a read
  uint64_t demotions = 0;       // GPU-only chunks moved to DRAM to make room on the GPU
  uint64_t dropped = 0;         // GPU-only chunks lost: no room in DRAM when evicted, or the tier failed
  uint64_t host_registered_bytes = 0;  // host arena bytes registered with CUDA (pinned); 0 = pageable
};

struct StoreStats {
  std::vector<TierSnapshot> tiers;
  uint64_t misses = 0;
  uint64_t checksum_failures = 0;
  uint64_t token_mismatches = 0;
  uint32_t namespaces = 0;
  uint64_t leases_held = 0;         // indexed chunks whose lease has not expired
  uint64_t inflight_put_bytes = 0;  // host bytes reserved by puts not yet committed or aborted
  uint64_t variants = 0;            // indexed variants of content-mode chunks
  DiskStats disk;
  GpuStats gpu;                     // tiers lists host, then nvme, then gpu (those present)
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(StoreOptions options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const StoreOptions& options() const { return options_; }
  const Tier& host_tier() const;  // the main arena (namespaces without a shared one)
  // The shareable arena of a namespace listed in shared_arena_bytes; nullptr for any other namespace.
  const HostArena* SharedArenaOf(std::string_view name_space) const;
  // Writes every demotable host chunk to disk now instead of waiting for the watermark (tests, benchmarks,
  // a planned shutdown).
  // Returns the number of chunks demoted.
  uint64_t DemoteAll();

  // Validates the namespace (1..128 bytes) and fingerprint. `for_write` registers both if new
  // (RESOURCE_EXHAUSTED past max_namespaces/max_fingerprints); reads of unknown ones just miss.
  Result<Scope> OpenScope(std::string_view name_space, const ModelFingerprint& fingerprint, bool for_write);

  // Validates the spec against the scope's fingerprint and limits and reserves space, evicting LRU
  // chunks as needed. RESOURCE_EXHAUSTED (naming the limit) when nothing evictable is left.
  Result<PendingPut> BeginPut(const Scope& scope, const PutSpec& spec);

  // A hit holds the chunk; a miss is an empty ChunkRef. `expected_tokens`, when not empty, must
  // equal the stored token ids or the answer is a miss. INVALID_ARGUMENT when the chunk was stored
  // under another fingerprint. With `verify_payload` false the payload checksum is left to the reader,
  // which must call ReportCorrupt when the bytes it copies do not hash to entry().checksum.
  Result<ChunkRef> Get(const Scope& scope, const ChunkKey& key, std::span<const uint32_t> expected_tokens = {},
                       bool verify_payload = true);
  // A reader found `ref`'s payload corrupt: counted as a checksum failure, and the chunk leaves the index
  // so no later read sees it.
  void ReportCorrupt(const ChunkRef& ref);

  // Same-node workers copy a leased chunk's GPU copy device-to-device by CUDA IPC (kvstore/GPU_TIER.md).
  // The GPU tier's arena as exported for that, or the reason there is no export (no GPU tier, or CUDA
  // refused); made once at Open.
  struct GpuIpcArena {
    gpu::IpcExport exported;
    uint64_t bytes = 0;
  };
  Result<GpuIpcArena> GpuIpcExport() const;
  // The arena offset of the payload of `ref`'s GPU copy, which stays there (not evicted, not moved) until
  // ReleaseGpuCopy(ref); nullopt when the chunk has no GPU copy or the tier is disabled. Each hold needs its
  // release while `ref` is still held.
  std::optional<uint64_t> HoldGpuCopy(const ChunkRef& ref);
  void ReleaseGpuCopy(const ChunkRef& ref);

  // Clients on other GPUs receive GPU copies over a peer link (the service's GPU channel, GPU_TIER.md "NCCL
  // channel"). The link kind and device to join on, or FAILED_PRECONDITION saying why the tier cannot send.
  struct GpuLinkInfo {
    gpu::PeerLinkKind kind = gpu::PeerLinkKind::kNccl;
    int device = 0;
    std::string device_name;
  };
  Result<GpuLinkInfo> GpuLink() const;
  // A hit for the GPU channel: its GPU copy held as by HoldGpuCopy (release with ReleaseGpuCopy while `ref` is
  // held), without a read into DRAM and without verification (the copy was written from a DRAM copy that was
  // verified at put). found == false for a miss; a hit without a usable GPU copy is found with an empty ref.
  struct GpuCopyHit {
    bool found = false;
    ChunkRef ref;         // set when the GPU copy is held
    uint64_t offset = 0;  // the payload's offset in the GPU arena
  };
  Result<GpuCopyHit> GetGpuCopy(const Scope& scope, const ChunkKey& key);
  // Enqueues sending `bytes` bytes of a held GPU copy (at HoldGpuCopy's offset) over `link`.
  Status SendGpuCopy(gpu::PeerLink& link, uint64_t offset, uint64_t bytes);

  // Number of leading keys present; `tiers` gets one entry per key (kNone for a miss). With
  // lease_ttl_ms > 0 the leading hits are leased (not evicted) for min(lease_ttl_ms, max_lease_ttl_ms).
  Result<uint32_t> Lookup(const Scope& scope, std::span<const ChunkKey> keys, uint32_t lease_ttl_ms,
                          std::vector<TierKind>* tiers);
  Result<std::vector<bool>> Exists(const Scope& scope, std::span<const ChunkKey> keys);
  // Deleting a content key also deletes every variant of it; `deleted` counts the chunks removed.
  Result<uint32_t> Delete(const Scope& scope, std::span<const ChunkKey> keys);

  // The best live variant of `content_key` for a chunk placed behind `new_context` (ordered content keys):
  // highest MatchContext score, then more of its context present, then fewer context chunks, then the most
  // recent put. A variant whose
  // chunk is gone or does not verify is skipped for the next best. A miss (no live variant) is an empty
  // ref. INVALID_ARGUMENT when the group was stored under another fingerprint.
  Result<VariantChoice> SelectVariant(const Scope& scope, const ChunkKey& content_key,
                                      std::span<const ChunkKey> new_context,
                                      std::span<const uint32_t> expected_tokens = {});
  // The reuse metadata of `key` when it is an indexed variant, else null.
  std::shared_ptr<const VariantMeta> VariantOf(const Scope& scope, const ChunkKey& key) const;

  // Shared cachegen profiles of the scope's namespace (ProfileRegistry); persisted with the NVMe tier.
  Result<StoredProfile> PutProfile(const Scope& scope, std::string_view name, std::span<const std::byte> bytes);
  // By name when not empty, else by id. NOT_FOUND when the namespace has no such profile.
  Result<StoredProfile> GetProfile(const Scope& scope, std::string_view name, uint64_t id) const;
  // Resolves profile ids for decoding chunks of the scope's namespace; valid while the store lives.
  codec::ProfileResolver ProfileResolver(const Scope& scope) const { return profiles_.Resolver(scope.ns_id); }

  StoreStats Stats() const;
  // INVALID_ARGUMENT unless 1 <= keys <= max_batch.
  Status CheckBatch(size_t keys) const;
  // With an NVMe tier: stop the demoter. Called by the destructor; idempotent.
  void Stop();

 private:
  friend class PendingPut;
  friend class ChunkRef;
  friend class StoreTestPeer;

  explicit Store(StoreOptions options);
  Status OpenDisk();
  void OpenGpu();              // never fails the Open: without a GPU tier the store runs on
  void RegisterHostArenas();  // with CUDA, when a GPU is present
  int64_t NowNs() const;
  Status ValidateSpec(const Scope& scope, const PutSpec& spec) const;
  // An encoded payload's container must say what the put said: codec, shape, a known profile.
  Status CheckContainer(const PendingPut& put) const;
  // Guarded: the caller holds mu_.
  // Frees host space by evicting LRU chunks. Chunks that have a disk copy just lose their DRAM copy.
  // Chunks that could still be demoted are only dropped when `may_drop` (else ABORTED: demote first).
  // Allocates in host pool `pool` (0: the main arena, else a namespace's shared arena).
  Result<Placement> AllocateHostLocked(uint64_t bytes, bool may_drop, uint8_t pool);
  bool DemotableLocked(const ChunkEntry& e) const;
  bool EvictableLocked(const ChunkEntry& e, int64_t now) const;
  Status ExhaustedLocked(uint64_t bytes, uint8_t pool) const;
  HostTier& HostOf(uint8_t pool) const { return *hosts_[pool]; }
  EvictionPolicy& PolicyOf(const ChunkEntry& e) const { return *policies_[e.host_pool]; }
  uint8_t PoolOfLocked(uint32_t ns_id) const;
  bool AboveDemoteWatermark() const;
  void RegisterNamespaceLocked(const std::string& name, uint32_t id);
  uint64_t QuotaOf(const std::string& name_space) const;
  // Charges a new entry's payload to its namespace; RESOURCE_EXHAUSTED past the quota (nothing charged).
  Status ChargeLocked(uint32_t ns_id, uint64_t bytes, bool enforce);
  Status CheckFingerprintLocked(const Scope& scope, const ChunkEntry& e) const;
  void RemoveLocked(ChunkEntry* e);
  Status CheckVariantGroupLocked(const Scope& scope, const ChunkKey& content_key) const;
  // Indexes a committed chunk as a variant; a variant it replaces is removed. False: refused (keep-existing).
  bool IndexVariantLocked(const ChunkEntry& e, std::shared_ptr<const VariantMeta> meta);
  // Removes a variant from the index and, with the NVMe tier, its persisted record.
  void ForgetVariantLocked(uint32_t ns_id, const ChunkKey& variant_key);
  void ForgetVariantRecordsLocked(uint32_t ns_id, std::span<const ChunkKey> variant_keys);
  // At start: re-indexes the persisted variants whose chunk the disk index restored (store_disk.cc).
  void RestoreVariants(std::vector<DiskVariantRecord> records, uint64_t unreadable);
  bool RestoreVariantLocked(const DiskVariantRecord& record, bool* consistent);
  void DropHostCopyLocked(ChunkEntry* e);
  void DropDiskCopyLocked(ChunkEntry* e);
  // Gives e (no host copy yet) the host copy at `placement`, with the counters and lists of a host chunk.
  void AddHostCopyLocked(ChunkEntry* e, const Placement& placement);
  void ListLeaseLocked(ChunkEntry* e);
  void UnlistLeaseLocked(ChunkEntry* e) const;
  void UnrefLocked(ChunkEntry* e);
  void ReleaseEntryLocked(ChunkEntry* e);
  void Unref(ChunkEntry* e);
  Result<PutOutcome> CommitPut(PendingPut* put);
  PutOutcome CommitPutLocked(PendingPut* put);
  void AbortPut(PendingPut* put);
  void BindLocked(ChunkRef* ref, ChunkEntry* e);  // points ref at e's host copy
  // The NVMe side (store_disk.cc).
  Result<bool> Promote(ChunkEntry* e);  // false: the record did not verify (dropped, counted)
  // A read of a chunk without a host copy (`*from` = e->tier()): from the GPU copy, else the disk's.
  Result<bool> BringToHost(ChunkEntry* e, TierKind* from);
  void DemoterLoop();
  // Writes a batch of the coldest undemoted host chunks (of host pool `pool` only, when >= 0) to disk.
  uint64_t DemoteBatch(bool force, int pool = -1);
  Result<Placement> AllocateDisk(uint64_t bytes);
  Status ReclaimRegion();
  void NoteDiskResult(const Status& status, bool write);  // device I/O: counts streaks, disables
  void NoteMetaResult(const Status& status);               // index writes: out of space stops demotion
  void DisableDiskLocked(const std::string& why);
  bool DiskWritableLocked() const;
  // The GPU side (store_gpu.cc). Callers of the unlocked ones hold a reference on the entry.
  bool CopyToGpu(ChunkEntry* e);           // after commit; consumes one reference; true: placed
  Result<Placement> AllocateGpu(uint64_t bytes);  // evicts (demotes) GPU chunks for room
  ChunkEntry* PickGpuVictimLocked() const;
  Status ExhaustedGpuLocked(uint64_t bytes) const;
  Status DemoteFromGpu(ChunkEntry* e);     // e picked for eviction; consumes its reference and copy count
  Result<bool> PromoteFromGpu(ChunkEntry* e);  // false: no GPU copy any more
  // Host room the way a put makes it (disk demotion first); may release and retake `lock`.
  Result<Placement> AllocateHostLikePutLocked(std::unique_lock<std::mutex>& lock, uint64_t bytes, uint8_t pool);
  void AddGpuCopyLocked(ChunkEntry* e, const Placement& placement);
  void UncountGpuCopyLocked(ChunkEntry* e);  // off the counters and the LRU; the placement stays
  void DropGpuCopyLocked(ChunkEntry* e);     // frees the placement too
  void NoteGpuResult(const Status& status, bool to_device);  // counts errors and streaks, disables
  void DisableGpuLocked(const std::string& why);
  bool GpuWritableLocked() const { return gpu_ != nullptr && !gpu_failed_; }

  const StoreOptions options_;
  // Host pools: [0] the main arena, then one shareable arena per namespace in shared_arena_bytes.
  // Each has its own LRU list, so a full shared arena evicts only its own namespace's chunks.
  std::vector<std::unique_ptr<HostTier>> hosts_;
  std::map<std::string, uint8_t, std::less<>> shared_pools_;      // namespace -> pool; fixed after Open
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<NvmeTier> nvme_;
  std::unique_ptr<AdmissionPolicy> admission_;
  ProfileRegistry profiles_;
  // The GPU tier, null without one; set at Open. Declared after hosts_ so the registrations (which pin
  // the host arenas) go before the arenas are unmapped.
  std::unique_ptr<GpuTier> gpu_;
  std::vector<gpu::HostRegistration> host_registrations_;  // set at Open
  uint64_t host_registered_bytes_ = 0;                      // set at Open
  bool gpu_all_puts_ = false;                               // placement "all"; set at Open
  std::string gpu_unavailable_;                             // set at Open
  Result<GpuIpcArena> gpu_ipc_export_ = Unavailable("no GPU tier");  // set at Open

  mutable std::mutex mu_;
  std::unique_ptr<ChunkTable> table_;                             // guarded by mu_
  std::unique_ptr<EntryPool> pool_;                               // guarded by mu_
  std::vector<std::unique_ptr<EvictionPolicy>> policies_;         // host LRU per pool; guarded by mu_
  std::vector<uint8_t> namespace_pools_;                          // host pool, by id - 1; guarded by mu_
  std::unique_ptr<DirtyList> dirty_;                              // host chunks not on disk; guarded by mu_
  std::unique_ptr<GpuList> gpu_lru_;                              // unpinned GPU copies; guarded by mu_
  std::unique_ptr<VariantIndex> variants_;                        // guarded by mu_
  // Set once a variant is indexed: until then plain gets skip the variant lookup (and its lock).
  std::atomic<bool> has_variants_{false};
  std::unordered_map<std::string, uint32_t> namespaces_;          // guarded by mu_
  std::vector<std::string> namespace_names_;                      // by id - 1; guarded by mu_
  std::vector<uint64_t> namespace_bytes_;                         // payload held, by id - 1; guarded by mu_
  std::unordered_map<ChunkKey, uint32_t, ChunkKeyHasher> fingerprint_ids_;  // by digest; guarded by mu_
  std::vector<ModelFingerprint> fingerprints_;                    // by id - 1; guarded by mu_
  uint64_t host_chunks_ = 0;                                      // guarded by mu_
  uint64_t host_pinned_chunks_ = 0;                               // guarded by mu_
  uint64_t disk_chunks_ = 0;                                      // guarded by mu_
  uint64_t gpu_chunks_ = 0;                                       // guarded by mu_
  uint64_t gpu_pinned_chunks_ = 0;                                // guarded by mu_
  uint64_t reservations_ = 0;                                     // puts in flight; guarded by mu_
  uint64_t reserved_bytes_ = 0;                                   // their host bytes; guarded by mu_
  // Chunks that were given a lease, so Stats() counts live leases without walking the whole index.
  // Entered on Lookup, left when the chunk leaves the index, and pruned by Stats() once expired
  // (mutable for that). Guarded by mu_.
  mutable std::vector<ChunkEntry*> leased_;
  bool disk_failed_ = false;                                      // guarded by mu_
  bool disk_full_ = false;                                        // guarded by mu_
  uint32_t disk_consecutive_errors_ = 0;                          // guarded by mu_
  bool gpu_failed_ = false;                                       // guarded by mu_
  uint32_t gpu_consecutive_errors_ = 0;                           // guarded by mu_
  uint64_t variants_restored_ = 0;                                // set at start
  uint64_t variant_records_skipped_ = 0;                          // set at start

  std::mutex reclaim_mu_;  // one reclaim at a time
  std::mutex demote_mu_;
  std::condition_variable demote_cv_;
  bool stopping_ = false;  // guarded by demote_mu_
  std::thread demoter_;

  std::atomic<uint64_t> host_hits_{0};
  std::atomic<uint64_t> host_evictions_{0};
  std::atomic<uint64_t> disk_hits_{0};
  std::atomic<uint64_t> disk_evictions_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> checksum_failures_{0};
  std::atomic<uint64_t> token_mismatches_{0};
  std::atomic<uint64_t> promotions_{0};
  std::atomic<uint64_t> demotions_{0};
  std::atomic<uint64_t> admission_rejected_{0};
  std::atomic<uint64_t> reinsertions_{0};
  std::atomic<uint64_t> disk_read_bytes_{0};
  std::atomic<uint64_t> disk_write_bytes_{0};
  std::atomic<uint64_t> disk_read_errors_{0};
  std::atomic<uint64_t> disk_write_errors_{0};
  std::atomic<uint64_t> gpu_hits_{0};
  std::atomic<uint64_t> gpu_evictions_{0};
  std::atomic<uint64_t> gpu_promotions_{0};
  std::atomic<uint64_t> gpu_demotions_{0};
  std::atomic<uint64_t> gpu_dropped_{0};
  std::atomic<uint64_t> gpu_read_bytes_{0};
  std::atomic<uint64_t> gpu_write_bytes_{0};
  std::atomic<uint64_t> gpu_read_errors_{0};
  std::atomic<uint64_t> gpu_write_errors_{0};
};

}  // namespace kvtier
