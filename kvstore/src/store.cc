#include "kvtier/kvstore/store.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "chunk_table.h"
#include "kvtier/api/chunk_keys.h"
#include "kvtier/api/reuse.h"
#include "dirty_list.h"
#include "entry_pool.h"
#include "gpu_list.h"
#include "kvtier/gpu/host_gather.h"
#include "kvtier/kvstore/gpu_tier.h"
#include "kvtier/kvstore/host_tier.h"
#include "nvme/meta_store.h"
#include "nvme/nvme_tier.h"

namespace kvtier {
namespace {

constexpr size_t kMaxNamespaceBytes = 128;
constexpr uint64_t kPayloadAlign = 64;

uint64_t AlignUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

std::string Bytes(uint64_t n) { return std::to_string(n) + " bytes"; }

// The smallest codec container: its header and one stream table entry (codec/FORMAT.md).
constexpr uint64_t kMinContainerBytes = 64 + 16;

codec::KvShape ShapeOf(const ModelFingerprint& fp, size_t tokens) {
  return {fp.num_layers, fp.num_kv_heads, fp.head_dim, static_cast<uint32_t>(tokens), fp.dtype};
}

}  // namespace

Status StoreOptions::Validate() const {
  if (host_capacity_bytes < (1ull << 20)) return InvalidArgument("host capacity must be at least 1 MiB");
  if (disk.enabled()) KVTIER_RETURN_IF_ERROR(disk.Validate());
  KVTIER_RETURN_IF_ERROR(gpu.Validate());
  if (max_chunk_bytes == 0) return InvalidArgument("max_chunk_bytes must be > 0");
  if (max_batch == 0) return InvalidArgument("max_batch must be > 0");
  if (max_namespaces == 0) return InvalidArgument("max_namespaces must be > 0");
  if (max_fingerprints == 0) return InvalidArgument("max_fingerprints must be > 0");
  KVTIER_RETURN_IF_ERROR(variants.Validate());
  if (profiles.max_per_namespace == 0) return InvalidArgument("max_profiles_per_namespace must be > 0");
  if (profiles.max_profile_bytes == 0) return InvalidArgument("max_profile_bytes must be > 0");
  if (shared_arena_bytes.size() > 64) return InvalidArgument("at most 64 namespaces may have a shared arena");
  for (const auto& [name, bytes] : shared_arena_bytes) {
    if (name.empty() || name.size() > kMaxNamespaceBytes) {
      return InvalidArgument("shared arena namespace '" + name + "' must be 1..128 bytes");
    }
    if (bytes < (1ull << 20)) return InvalidArgument("shared arena of namespace '" + name + "' must be at least 1 MiB");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------------
// PendingPut

PendingPut::PendingPut(PendingPut&& other) noexcept { *this = std::move(other); }

PendingPut& PendingPut::operator=(PendingPut&& other) noexcept {
  if (this != &other) {
    Abort();
    store_ = std::exchange(other.store_, nullptr);
    entry_ = std::exchange(other.entry_, nullptr);
    payload_ = std::exchange(other.payload_, nullptr);
    key_ = other.key_;
    expected_ = other.expected_;
    received_ = other.received_;
    declared_checksum_ = other.declared_checksum_;
    checksum_ = other.checksum_;
    codec_ = other.codec_;
    shape_ = other.shape_;
    variant_ = std::move(other.variant_);
    variant_refused_ = other.variant_refused_;
    variant_admitted_ = other.variant_admitted_;
    to_gpu_ = other.to_gpu_;
  }
  return *this;
}

PendingPut::~PendingPut() { Abort(); }

void PendingPut::Abort() {
  if (store_ != nullptr && entry_ != nullptr) store_->AbortPut(this);
  store_ = nullptr;
  entry_ = nullptr;
}

Status PendingPut::Append(std::span<const std::byte> data) {
  if (data.size() > expected_ - received_) {
    return InvalidArgument("data exceeds the declared payload of " + Bytes(expected_) + " for chunk " + key_.ToHex() +
                           " (" + Bytes(received_ + data.size()) + " so far)");
  }
  if (entry_ != nullptr) {
    std::memcpy(payload_ + received_, data.data(), data.size());
    // Hash what landed, not the source: a source another process can still write (a shared-memory
    // put window) cannot then change the bytes after they were checked.
    checksum_.Update({payload_ + received_, data.size()});
  }
  received_ += data.size();
  return Status::Ok();
}

Result<PutOutcome> PendingPut::Commit() {
  if (store_ == nullptr) return FailedPrecondition("put already committed or aborted");
  if (!complete()) {
    return FailedPrecondition("chunk " + key_.ToHex() + " is incomplete: " + Bytes(received_) + " of " +
                              Bytes(expected_));
  }
  if (entry_ == nullptr) {
    store_ = nullptr;
    return PutOutcome{!variant_refused_, TierKind::kNone, variant_admitted_};
  }
  if (checksum_.Digest() != declared_checksum_) {
    Abort();
    return DataLoss("checksum mismatch for chunk " + key_.ToHex() + ": payload does not hash to the declared value");
  }
  if (codec_ != CodecId::kRaw) {
    if (Status s = store_->CheckContainer(*this); !s.ok()) {
      Abort();
      return s;
    }
  }
  Result<PutOutcome> out = store_->CommitPut(this);
  store_ = nullptr;
  entry_ = nullptr;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// ChunkRef

ChunkRef::ChunkRef(ChunkRef&& other) noexcept { *this = std::move(other); }

ChunkRef& ChunkRef::operator=(ChunkRef&& other) noexcept {
  if (this != &other) {
    Reset();
    store_ = std::exchange(other.store_, nullptr);
    entry_ = std::exchange(other.entry_, nullptr);
    payload_ = std::exchange(other.payload_, {});
    tokens_ = std::exchange(other.tokens_, {});
  }
  return *this;
}

ChunkRef::~ChunkRef() { Reset(); }

void ChunkRef::Reset() {
  if (entry_ != nullptr) store_->Unref(entry_);
  store_ = nullptr;
  entry_ = nullptr;
  payload_ = {};
  tokens_ = {};
}

// ---------------------------------------------------------------------------------------------------
// Store

Result<std::unique_ptr<Store>> Store::Open(StoreOptions options) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Store> store(new Store(std::move(options)));
  const StoreOptions& o = store->options_;
  auto host = HostTier::Create({o.host_capacity_bytes, o.host_huge_pages, o.host_prefault});
  if (!host.ok()) return host.status();
  store->hosts_.push_back(std::move(host).value());
  store->policies_.push_back(MakeLruPolicy());
  for (const auto& [name, bytes] : o.shared_arena_bytes) {
    HostArenaOptions arena{bytes, o.host_huge_pages, o.host_prefault, /*shareable=*/true, "kvtier-ns-" + name};
    auto shared = HostTier::Create(arena);
    if (!shared.ok()) return shared.status();
    store->shared_pools_.emplace(name, static_cast<uint8_t>(store->hosts_.size()));
    store->hosts_.push_back(std::move(shared).value());
    store->policies_.push_back(MakeLruPolicy());
  }
  if (o.gpu.enabled()) store->OpenGpu();
  // Only the GPU tier's copies gain from pinned host arenas here (workers register the shared arenas they map in
  // their own processes); without it the server creates no CUDA context on a GPU the workers use.
  if (o.host_cuda_register && store->gpu_ != nullptr) store->RegisterHostArenas();
  if (store->options_.disk.enabled()) KVTIER_RETURN_IF_ERROR(store->OpenDisk());
  return store;
}

Store::Store(StoreOptions options)
    : options_(std::move(options)),
      profiles_(options_.profiles),
      table_(std::make_unique<ChunkTable>()),
      pool_(std::make_unique<EntryPool>()),
      dirty_(std::make_unique<DirtyList>()),
      gpu_lru_(std::make_unique<GpuList>()),
      variants_(std::make_unique<VariantIndex>(options_.variants.max_variants,
                                               options_.variants.admission_policy())) {}

Store::~Store() { Stop(); }

const Tier& Store::host_tier() const { return *hosts_[0]; }

const HostArena* Store::SharedArenaOf(std::string_view name_space) const {
  auto it = shared_pools_.find(name_space);
  return it == shared_pools_.end() ? nullptr : &hosts_[it->second]->arena();
}

uint8_t Store::PoolOfLocked(uint32_t ns_id) const {
  return ns_id >= 1 && ns_id <= namespace_pools_.size() ? namespace_pools_[ns_id - 1] : 0;
}

bool Store::AboveDemoteWatermark() const {
  for (const auto& host : hosts_) {
    if (host->used_bytes() > static_cast<uint64_t>(options_.disk.demote_watermark * host->capacity_bytes())) return true;
  }
  return false;
}

int64_t Store::NowNs() const {
  if (options_.now_ns) return options_.now_ns();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status Store::CheckBatch(size_t keys) const {
  if (keys == 0) return InvalidArgument("no keys in the request");
  if (keys > options_.max_batch) {
    return InvalidArgument("batch of " + std::to_string(keys) + " keys exceeds max_batch " +
                           std::to_string(options_.max_batch));
  }
  return Status::Ok();
}

Result<Scope> Store::OpenScope(std::string_view name_space, const ModelFingerprint& fingerprint, bool for_write) {
  if (name_space.empty()) return InvalidArgument("namespace is empty");
  if (name_space.size() > kMaxNamespaceBytes) return InvalidArgument("namespace is longer than 128 bytes");
  KVTIER_RETURN_IF_ERROR(fingerprint.Validate());
  const ChunkKey digest = fingerprint.Digest();
  Scope scope;
  scope.fingerprint = fingerprint;
  std::lock_guard lock(mu_);
  if (auto it = namespaces_.find(std::string(name_space)); it != namespaces_.end()) {
    scope.ns_id = it->second;
  } else if (for_write) {
    if (namespaces_.size() >= options_.max_namespaces) {
      return ResourceExhausted("namespace limit reached: max_namespaces " + std::to_string(options_.max_namespaces));
    }
    scope.ns_id = static_cast<uint32_t>(namespaces_.size() + 1);
    if (meta_ != nullptr) KVTIER_RETURN_IF_ERROR(meta_->PutNamespace(scope.ns_id, std::string(name_space)));
    RegisterNamespaceLocked(std::string(name_space), scope.ns_id);
  }
  if (auto it = fingerprint_ids_.find(digest); it != fingerprint_ids_.end()) {
    if (fingerprints_[it->second - 1] != fingerprint) {
      return Internal("fingerprint digest collision for " + fingerprint.ShortString());
    }
    scope.fp_id = it->second;
  } else if (for_write) {
    if (fingerprints_.size() >= options_.max_fingerprints) {
      return ResourceExhausted("fingerprint limit reached: max_fingerprints " +
                               std::to_string(options_.max_fingerprints));
    }
    if (meta_ != nullptr) {
      KVTIER_RETURN_IF_ERROR(meta_->PutFingerprint(static_cast<uint32_t>(fingerprints_.size() + 1), fingerprint));
    }
    fingerprints_.push_back(fingerprint);
    scope.fp_id = static_cast<uint32_t>(fingerprints_.size());
    fingerprint_ids_.emplace(digest, scope.fp_id);
  }
  return scope;
}

namespace {

// The keys and metadata of a variant put (docs/keys.md "Variants").
Status ValidateVariant(const ModelFingerprint& fp, const PutSpec& spec) {
  if (spec.variant == nullptr) return Status::Ok();
  const VariantMeta& m = *spec.variant;
  KVTIER_RETURN_IF_ERROR(m.Validate(fp.num_layers, spec.token_ids.size()));
  const ChunkKey content = DeriveContentKey(fp.Digest(), spec.token_ids);
  if (m.content_key != content) {
    return InvalidArgument("variant put: reuse.content_key " + m.content_key.ToHex() +
                           " is not the content key of the chunk's token ids, " + content.ToHex());
  }
  const ChunkKey expected = VariantKey(m.content_key, m.context);
  if (spec.key != expected) {
    return InvalidArgument("variant put: key " + spec.key.ToHex() + " is not VariantKey(content_key, context_keys) = " +
                           expected.ToHex());
  }
  return Status::Ok();
}

}  // namespace

Status Store::ValidateSpec(const Scope& scope, const PutSpec& spec) const {
  const ModelFingerprint& fp = scope.fingerprint;
  const TierKind prefer = spec.prefer_tier;
  if (prefer != TierKind::kNone && prefer != TierKind::kHost && prefer != TierKind::kGpu) {
    return InvalidArgument("prefer_tier " + std::to_string(static_cast<int>(prefer)) +
                           " cannot be asked for: use HOST or GPU (chunks reach the NVMe tier by demotion)");
  }
  if (spec.token_ids.empty()) return InvalidArgument("token_ids is empty: a chunk holds at least one token");
  if (spec.token_ids.size() > fp.chunk_tokens) {
    return InvalidArgument(std::to_string(spec.token_ids.size()) + " token ids exceed fingerprint.chunk_tokens " +
                           std::to_string(fp.chunk_tokens));
  }
  if (codec::CodecName(spec.codec) == "unknown") {
    return InvalidArgument("unknown codec " + std::to_string(static_cast<int>(spec.codec)) +
                           " (known: 1 raw, 2 lossless, 3 int8, 4 cachegen, 5 kivi2, 6 mixed)");
  }
  if (spec.payload_bytes > options_.max_chunk_bytes) {
    return InvalidArgument("chunk of " + Bytes(spec.payload_bytes) + " exceeds max_chunk_bytes " +
                           std::to_string(options_.max_chunk_bytes));
  }
  if (spec.codec != CodecId::kRaw) {
    const uint64_t most = codec::MaxEncodedBytes(ShapeOf(fp, spec.token_ids.size()));
    if (spec.payload_bytes < kMinContainerBytes || spec.payload_bytes > most) {
      return InvalidArgument("encoded payload of " + Bytes(spec.payload_bytes) + " is outside [" +
                             std::to_string(kMinContainerBytes) + ", " + std::to_string(most) + "] for " +
                             std::to_string(spec.token_ids.size()) + " tokens of " + fp.ShortString());
    }
    return ValidateVariant(fp, spec);
  }
  const uint64_t shape_bytes = spec.token_ids.size() * fp.KvBytesPerToken();
  if (spec.payload_bytes != shape_bytes) {
    return InvalidArgument("payload of " + Bytes(spec.payload_bytes) + " does not match the shape: " +
                           std::to_string(spec.token_ids.size()) + " tokens x " + std::to_string(fp.num_layers) +
                           " layers x 2 x " + std::to_string(fp.num_kv_heads) + " heads x " +
                           std::to_string(fp.head_dim) + " dims x " + std::to_string(DTypeBytes(fp.dtype)) +
                           " bytes = " + Bytes(shape_bytes));
  }
  return ValidateVariant(fp, spec);
}

Result<PendingPut> Store::BeginPut(const Scope& scope, const PutSpec& spec) {
  KVTIER_RETURN_IF_ERROR(ValidateSpec(scope, spec));
  if (scope.ns_id == 0 || scope.fp_id == 0) return FailedPrecondition("put needs a scope opened for write");
  const uint64_t tokens_bytes = AlignUp(spec.token_ids.size() * sizeof(uint32_t), kPayloadAlign);
  const uint64_t total = tokens_bytes + spec.payload_bytes;

  PendingPut put;
  put.store_ = this;
  put.key_ = spec.key;
  put.expected_ = spec.payload_bytes;
  put.declared_checksum_ = spec.checksum;
  put.codec_ = spec.codec;
  put.shape_ = ShapeOf(scope.fingerprint, spec.token_ids.size());
  put.variant_ = spec.variant;
  put.to_gpu_ = gpu_ != nullptr && (spec.prefer_tier == TierKind::kGpu || gpu_all_puts_);
  for (int attempt = 0;; ++attempt) {
    std::unique_lock lock(mu_);
    if (spec.variant != nullptr) KVTIER_RETURN_IF_ERROR(CheckVariantGroupLocked(scope, spec.variant->content_key));
    if (ChunkEntry* existing = table_->Find(scope.ns_id, spec.key)) {
      KVTIER_RETURN_IF_ERROR(CheckFingerprintLocked(scope, *existing));
      // A chunk put before without its metadata (or before a restart) becomes an indexed variant now.
      if (spec.variant != nullptr) put.variant_admitted_ = IndexVariantLocked(*existing, spec.variant);
      put.variant_ = nullptr;
      return put;  // already present: the caller drains the payload, nothing is written
    }
    if (spec.variant != nullptr && !variants_->WouldAdmit(scope.ns_id, spec.variant->content_key, spec.key)) {
      put.variant_refused_ = true;  // keep-existing and the group is full: drain, store nothing
      put.variant_admitted_ = false;
      put.variant_ = nullptr;
      return put;
    }
    if (Status quota = ChargeLocked(scope.ns_id, spec.payload_bytes, /*enforce=*/true); !quota.ok()) {
      put.store_ = nullptr;
      return quota;
    }
    // Room is made by demoting cold chunks to disk first (this thread does the I/O, which is the
    // backpressure when puts outrun the demoter); only if that fails are undemoted chunks dropped.
    const uint8_t pool = PoolOfLocked(scope.ns_id);
    auto placement = AllocateHostLocked(total, /*may_drop=*/attempt >= 4, pool);
    if (!placement.ok()) namespace_bytes_[scope.ns_id - 1] -= spec.payload_bytes;  // charged again next try
    if (!placement.ok() && placement.status().code() == StatusCode::kAborted) {
      lock.unlock();
      if (DemoteBatch(/*force=*/true, PoolOfLocked(scope.ns_id)) == 0) attempt = 4;
      continue;
    }
    if (!placement.ok()) {
      put.store_ = nullptr;
      return placement.status();
    }
    ChunkEntry* e = pool_->Acquire();
    e->key = spec.key;
    e->ns_id = scope.ns_id;
    e->fp_id = scope.fp_id;
    e->num_tokens = static_cast<uint32_t>(spec.token_ids.size());
    e->base_position = spec.base_position;
    e->codec = static_cast<uint8_t>(spec.codec);
    e->pinned = spec.pin;
    e->host_pool = pool;
    e->payload_bytes = spec.payload_bytes;
    e->checksum = spec.checksum;
    e->host = *placement;
    e->in_host = true;
    e->payload_offset = tokens_bytes;
    ++reservations_;
    reserved_bytes_ += e->host.length;
    put.entry_ = e;
    break;
  }
  std::span<std::byte> mem = HostOf(put.entry_->host_pool).Map(put.entry_->host);
  std::memcpy(mem.data(), spec.token_ids.data(), spec.token_ids.size_bytes());
  // Zero the padding so the body written to disk carries no stale bytes.
  std::memset(mem.data() + spec.token_ids.size_bytes(), 0, tokens_bytes - spec.token_ids.size_bytes());
  const uint64_t tail = put.entry_->host.length - total;
  std::memset(mem.data() + total, 0, tail);
  put.payload_ = mem.data() + tokens_bytes;
  return put;
}

Result<PutOutcome> Store::CommitPut(PendingPut* put) {
  ChunkEntry* e = put->entry_;
  PutOutcome outcome;
  bool to_gpu = false;
  {
    std::lock_guard lock(mu_);
    outcome = CommitPutLocked(put);
    to_gpu = put->to_gpu_ && outcome.tier == TierKind::kHost && GpuWritableLocked();
    if (to_gpu) e->refs.fetch_add(1, std::memory_order_acq_rel);  // keeps the host copy while it is copied
  }
  // The put waits for its GPU copy (and for room made on the GPU): that is its backpressure.
  if (to_gpu && CopyToGpu(e)) outcome.tier = TierKind::kGpu;
  return outcome;
}

PutOutcome Store::CommitPutLocked(PendingPut* put) {
  ChunkEntry* e = put->entry_;
  --reservations_;
  reserved_bytes_ -= e->host.length;
  if (ChunkEntry* existing = table_->Find(e->ns_id, e->key)) {
    // A concurrent put of the same key committed first; ours is redundant (chunks are immutable).
    ReleaseEntryLocked(e);
    const bool admitted = put->variant_ == nullptr || IndexVariantLocked(*existing, put->variant_);
    return PutOutcome{true, TierKind::kNone, admitted};
  }
  if (put->variant_ != nullptr && !variants_->WouldAdmit(e->ns_id, put->variant_->content_key, e->key)) {
    ReleaseEntryLocked(e);  // a concurrent variant filled the group (keep-existing)
    return PutOutcome{false, TierKind::kNone, false};
  }
  e->refs.store(1, std::memory_order_relaxed);  // the index's reference
  e->indexed = true;
  table_->Insert(e);
  if (e->pinned) ++host_pinned_chunks_;
  else PolicyOf(*e).OnInsert(e);
  ++host_chunks_;
  if (nvme_ != nullptr && !e->pinned) dirty_->PushFront(e);
  if (nvme_ != nullptr && options_.disk.background_demotion && AboveDemoteWatermark()) demote_cv_.notify_one();
  if (put->variant_ != nullptr) IndexVariantLocked(*e, put->variant_);
  return PutOutcome{false, TierKind::kHost};
}

void Store::AbortPut(PendingPut* put) {
  std::lock_guard lock(mu_);
  --reservations_;
  reserved_bytes_ -= put->entry_->host.length;
  ReleaseEntryLocked(put->entry_);
}

bool Store::EvictableLocked(const ChunkEntry& e, int64_t now) const {
  return !e.pinned && e.lease_until_ns.load(std::memory_order_relaxed) <= now &&
         e.refs.load(std::memory_order_acquire) == 1;
}

Result<Placement> Store::AllocateHostLocked(uint64_t bytes, bool may_drop, uint8_t pool) {
  HostTier& host = HostOf(pool);
  if (bytes > host.capacity_bytes()) {
    return ResourceExhausted("chunk needs " + Bytes(bytes) + ", more than the " +
                             (pool == 0 ? "host tier" : "namespace's shared arena") + " capacity of " +
                             Bytes(host.capacity_bytes()));
  }
  const int64_t now = NowNs();
  EvictionPolicy& policy = *policies_[pool];
  for (;;) {
    auto placement = host.Allocate(bytes);
    if (placement.ok()) return placement;
    // Prefer victims whose bytes survive on disk or on the GPU; drop a chunk that could still be demoted
    // only if allowed.
    ChunkEntry* victim = policy.PickVictim([&](const ChunkEntry& e) {
      return EvictableLocked(e, now) && (e.on_disk || e.in_gpu || !DemotableLocked(e));
    });
    if (victim == nullptr) {
      victim = policy.PickVictim([&](const ChunkEntry& e) { return EvictableLocked(e, now); });
      if (victim == nullptr) return ExhaustedLocked(bytes, pool);
      if (!may_drop) return Status(StatusCode::kAborted, "demote before evicting");
    }
    host_evictions_.fetch_add(1, std::memory_order_relaxed);
    // A chunk already on disk or on the GPU only loses its DRAM copy: that is the demotion, and nothing
    // is rewritten.
    if (victim->on_disk || victim->in_gpu) DropHostCopyLocked(victim);
    else RemoveLocked(victim);
  }
}

Status Store::ExhaustedLocked(uint64_t bytes, uint8_t pool) const {
  const int64_t now = NowNs();
  const HostTier& host = HostOf(pool);
  uint64_t leased = 0, reading = 0;
  table_->ForEach([&](const ChunkEntry& e) {
    if (e.pinned || e.host_pool != pool) return;
    if (e.lease_until_ns.load(std::memory_order_relaxed) > now) ++leased;
    else if (e.refs.load(std::memory_order_relaxed) > 1) ++reading;
  });
  return ResourceExhausted(std::string(pool == 0 ? "host tier" : "namespace's shared arena") + " full: no room for " +
                           Bytes(bytes) + " (capacity " + Bytes(host.capacity_bytes()) + ", used " +
                           Bytes(host.used_bytes()) +
                           ") and nothing evictable: " + std::to_string(host_pinned_chunks_) + " chunks pinned, " +
                           std::to_string(leased) + " leased, " + std::to_string(reading) + " being read, " +
                           std::to_string(reservations_) + " puts in flight");
}

Status Store::CheckVariantGroupLocked(const Scope& scope, const ChunkKey& content_key) const {
  const std::optional<uint32_t> fp = variants_->GroupFingerprint(scope.ns_id, content_key);
  if (!fp || *fp == scope.fp_id) return Status::Ok();
  return InvalidArgument("fingerprint mismatch for the variants of content key " + content_key.ToHex() +
                         ": stored as '" + fingerprints_[*fp - 1].ShortString() + "', requested as '" +
                         scope.fingerprint.ShortString() + "'");
}

bool Store::IndexVariantLocked(const ChunkEntry& e, std::shared_ptr<const VariantMeta> meta) {
  const VariantMeta* m = meta.get();  // kept alive by the index
  const VariantIndex::AddOutcome added = variants_->Add(e.ns_id, e.fp_id, e.key, std::move(meta), NowNs());
  if (added.admitted) has_variants_.store(true, std::memory_order_relaxed);
  if (added.replaced) {
    ForgetVariantRecordsLocked(e.ns_id, {&*added.replaced, 1});
    if (ChunkEntry* old = table_->Find(e.ns_id, *added.replaced)) RemoveLocked(old);
  }
  // The record may reach the index before the chunk reaches disk: at start a record without its chunk is ignored.
  if (meta_ != nullptr && added.admitted && !added.already_indexed) {
    NoteMetaResult(meta_->PutVariant(e.ns_id, e.key, e.fp_id, added.put_seq, *m));
  }
  return added.admitted;
}

void Store::ForgetVariantLocked(uint32_t ns_id, const ChunkKey& variant_key) {
  if (variants_->Remove(ns_id, variant_key)) ForgetVariantRecordsLocked(ns_id, {&variant_key, 1});
}

void Store::ForgetVariantRecordsLocked(uint32_t ns_id, std::span<const ChunkKey> variant_keys) {
  if (meta_ != nullptr && !variant_keys.empty()) NoteMetaResult(meta_->DeleteVariants(ns_id, variant_keys));
}

Status Store::CheckFingerprintLocked(const Scope& scope, const ChunkEntry& e) const {
  if (e.fp_id == scope.fp_id) return Status::Ok();
  return InvalidArgument("fingerprint mismatch for chunk " + e.key.ToHex() + ": stored as '" +
                         fingerprints_[e.fp_id - 1].ShortString() + "', requested as '" +
                         scope.fingerprint.ShortString() + "'");
}

void Store::RemoveLocked(ChunkEntry* e) {
  table_->Erase(e);
  ForgetVariantLocked(e->ns_id, e->key);
  e->indexed = false;
  UnlistLeaseLocked(e);
  dirty_->Remove(e);
  if (e->in_host) {
    if (e->pinned) --host_pinned_chunks_;
    else PolicyOf(*e).OnRemove(e);
    --host_chunks_;
  }
  if (e->on_disk) {
    --disk_chunks_;
    const std::pair<uint32_t, ChunkKey> key{e->ns_id, e->key};
    NoteMetaResult(meta_->DeleteChunks({&key, 1}));
  }
  if (e->in_gpu) UncountGpuCopyLocked(e);  // the placement goes with the last reference
  UnrefLocked(e);
}

void Store::DropHostCopyLocked(ChunkEntry* e) {
  dirty_->Remove(e);
  if (!e->pinned) PolicyOf(*e).OnRemove(e);
  else --host_pinned_chunks_;
  --host_chunks_;
  HostOf(e->host_pool).Free(e->host);
  e->host = {};
  e->in_host = false;
}

void Store::DropDiskCopyLocked(ChunkEntry* e) {
  const std::pair<uint32_t, ChunkKey> key{e->ns_id, e->key};
  NoteMetaResult(meta_->DeleteChunks({&key, 1}));
  nvme_->Free(e->disk);
  e->disk = {};
  e->on_disk = false;
  --disk_chunks_;
  if (e->in_host && !e->pinned) dirty_->PushFront(e);  // it needs a disk copy again
}

void Store::UnrefLocked(ChunkEntry* e) {
  if (e->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) ReleaseEntryLocked(e);
}

void Store::Unref(ChunkEntry* e) {
  if (e->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard lock(mu_);
    ReleaseEntryLocked(e);
  }
}

void Store::ListLeaseLocked(ChunkEntry* e) {
  if (e->lease_slot != ChunkEntry::kNoLeaseSlot) return;
  e->lease_slot = static_cast<uint32_t>(leased_.size());
  leased_.push_back(e);
}

void Store::UnlistLeaseLocked(ChunkEntry* e) const {
  if (e->lease_slot == ChunkEntry::kNoLeaseSlot) return;
  ChunkEntry* last = leased_.back();
  leased_[e->lease_slot] = last;
  last->lease_slot = e->lease_slot;
  leased_.pop_back();
  e->lease_slot = ChunkEntry::kNoLeaseSlot;
}

void Store::ReleaseEntryLocked(ChunkEntry* e) {
  UnlistLeaseLocked(e);
  if (e->ns_id >= 1 && e->ns_id <= namespace_bytes_.size()) namespace_bytes_[e->ns_id - 1] -= e->payload_bytes;
  if (e->in_host) HostOf(e->host_pool).Free(e->host);
  if (e->on_disk && nvme_ != nullptr) nvme_->Free(e->disk);
  if (e->in_gpu) gpu_->Free(e->gpu);
  pool_->Release(e);
}

void Store::AddHostCopyLocked(ChunkEntry* e, const Placement& placement) {
  e->host = placement;
  e->in_host = true;
  if (!e->indexed) return;  // deleted meanwhile: the copy serves the reader that made it, then is freed
  ++host_chunks_;
  if (e->pinned) ++host_pinned_chunks_;
  else PolicyOf(*e).OnInsert(e);
  if (nvme_ != nullptr && !e->pinned && !e->on_disk) dirty_->PushFront(e);  // it needs a disk copy
}

void Store::BindLocked(ChunkRef* ref, ChunkEntry* e) {
  std::span<std::byte> mem = HostOf(e->host_pool).Map(e->host);
  ref->store_ = this;
  ref->entry_ = e;
  ref->tokens_ = {reinterpret_cast<const uint32_t*>(mem.data()), e->num_tokens};
  ref->payload_ = {mem.data() + e->payload_offset, e->payload_bytes};
}

Result<ChunkRef> Store::Get(const Scope& scope, const ChunkKey& key, std::span<const uint32_t> expected_tokens,
                            bool verify_payload) {
  ChunkEntry* e = nullptr;
  TierKind from = TierKind::kHost;  // where this read is served from
  {
    std::lock_guard lock(mu_);
    e = scope.ns_id == 0 ? nullptr : table_->Find(scope.ns_id, key);
    if (e == nullptr) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return ChunkRef();
    }
    KVTIER_RETURN_IF_ERROR(CheckFingerprintLocked(scope, *e));
    e->refs.fetch_add(1, std::memory_order_acq_rel);
    ++e->hits;
    from = e->tier();
    if (from == TierKind::kHost && !e->pinned) {
      PolicyOf(*e).OnAccess(e);
      if (e->admission_refused && !e->on_disk && nvme_ != nullptr) dirty_->PushFront(e);
      dirty_->Touch(e);
    }
    gpu_lru_->Touch(e);            // a no-op for chunks without an unpinned GPU copy
    e->admission_refused = false;  // reuse is new evidence for the admission policy
  }
  ChunkRef ref;
  ref.store_ = this;
  ref.entry_ = e;  // from here on ref's destructor releases the reference taken above
  if (from != TierKind::kHost) {
    auto promoted = BringToHost(e, &from);
    if (!promoted.ok() || !*promoted) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return ChunkRef();
    }
  }
  {
    // The host copy cannot be dropped while we hold a reference (only unreferenced chunks are evicted).
    std::lock_guard lock(mu_);
    BindLocked(&ref, e);
  }
  // Verification reads the bytes outside the lock; the reference keeps them alive.
  if (!expected_tokens.empty() && !std::equal(expected_tokens.begin(), expected_tokens.end(),
                                              ref.token_ids().begin(), ref.token_ids().end())) {
    token_mismatches_.fetch_add(1, std::memory_order_relaxed);
    misses_.fetch_add(1, std::memory_order_relaxed);
    return ChunkRef();
  }
  if (verify_payload && Checksum64(ref.payload()) != ref.entry().checksum) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    ReportCorrupt(ref);
    return ChunkRef();
  }
  (from == TierKind::kHost ? host_hits_ : from == TierKind::kGpu ? gpu_hits_ : disk_hits_)
      .fetch_add(1, std::memory_order_relaxed);
  return ref;
}

void Store::ReportCorrupt(const ChunkRef& ref) {
  if (!ref) return;
  checksum_failures_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  if (ref.entry_->indexed) RemoveLocked(ref.entry_);  // drop the corrupt chunk so no later read sees it
}

Result<uint32_t> Store::Lookup(const Scope& scope, std::span<const ChunkKey> keys, uint32_t lease_ttl_ms,
                               std::vector<TierKind>* tiers) {
  KVTIER_RETURN_IF_ERROR(CheckBatch(keys.size()));
  const uint32_t ttl = std::min(lease_ttl_ms, options_.max_lease_ttl_ms);
  const int64_t lease_until = NowNs() + int64_t{ttl} * 1000000;
  tiers->assign(keys.size(), TierKind::kNone);
  uint32_t leading = 0;
  bool prefix = true;
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    ChunkEntry* e = scope.ns_id == 0 ? nullptr : table_->Find(scope.ns_id, keys[i]);
    if (e == nullptr) {
      prefix = false;
      continue;
    }
    KVTIER_RETURN_IF_ERROR(CheckFingerprintLocked(scope, *e));
    (*tiers)[i] = e->tier();
    if (!prefix) continue;
    ++leading;
    if (ttl > 0 && e->lease_until_ns.load(std::memory_order_relaxed) < lease_until) {
      e->lease_until_ns.store(lease_until, std::memory_order_relaxed);
      ListLeaseLocked(e);
    }
  }
  return leading;
}

Result<std::vector<bool>> Store::Exists(const Scope& scope, std::span<const ChunkKey> keys) {
  KVTIER_RETURN_IF_ERROR(CheckBatch(keys.size()));
  std::vector<bool> out(keys.size(), false);
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    ChunkEntry* e = scope.ns_id == 0 ? nullptr : table_->Find(scope.ns_id, keys[i]);
    if (e == nullptr) continue;
    KVTIER_RETURN_IF_ERROR(CheckFingerprintLocked(scope, *e));
    out[i] = true;
  }
  return out;
}

Result<uint32_t> Store::Delete(const Scope& scope, std::span<const ChunkKey> keys) {
  KVTIER_RETURN_IF_ERROR(CheckBatch(keys.size()));
  std::lock_guard lock(mu_);
  if (scope.ns_id == 0) return 0u;
  for (const ChunkKey& key : keys) {
    ChunkEntry* e = table_->Find(scope.ns_id, key);
    if (e != nullptr) KVTIER_RETURN_IF_ERROR(CheckFingerprintLocked(scope, *e));
    KVTIER_RETURN_IF_ERROR(CheckVariantGroupLocked(scope, key));
  }
  uint32_t deleted = 0;
  for (const ChunkKey& key : keys) {
    // A content key names its variant group too: every variant goes with it.
    const std::vector<ChunkKey> group = variants_->RemoveGroup(scope.ns_id, key);
    ForgetVariantRecordsLocked(scope.ns_id, group);
    for (const ChunkKey& variant : group) {
      if (ChunkEntry* v = table_->Find(scope.ns_id, variant)) {
        RemoveLocked(v);
        ++deleted;
      }
    }
    ChunkEntry* e = table_->Find(scope.ns_id, key);
    if (e == nullptr) continue;
    RemoveLocked(e);
    ++deleted;
  }
  return deleted;
}

Result<VariantChoice> Store::SelectVariant(const Scope& scope, const ChunkKey& content_key,
                                           std::span<const ChunkKey> new_context,
                                           std::span<const uint32_t> expected_tokens) {
  std::vector<VariantCandidate> candidates;
  if (scope.ns_id != 0) {
    std::lock_guard lock(mu_);
    KVTIER_RETURN_IF_ERROR(CheckVariantGroupLocked(scope, content_key));
    candidates = variants_->Candidates(scope.ns_id, content_key);
  }
  VariantChoice choice;
  if (candidates.empty()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return choice;
  }
  // Scored outside the lock: the metadata is immutable and shared.
  RankVariants(new_context, &candidates);
  for (VariantCandidate& c : candidates) {
    auto ref = Get(scope, c.variant_key, expected_tokens);
    if (!ref.ok()) return ref.status();
    if (!*ref) continue;  // evicted, deleted or corrupt since it was listed: the next best live one
    {
      std::lock_guard lock(mu_);
      variants_->MarkChosen(scope.ns_id, c.variant_key, NowNs());
    }
    choice.ref = std::move(ref).value();
    choice.group = GroupHint(candidates, choice.ref.token_ids().size());
    choice.variant_key = c.variant_key;
    choice.meta = std::move(c.meta);
    choice.match = c.match;
    return choice;
  }
  return choice;
}

std::shared_ptr<const VariantMeta> Store::VariantOf(const Scope& scope, const ChunkKey& key) const {
  if (!has_variants_.load(std::memory_order_relaxed)) return nullptr;
  std::lock_guard lock(mu_);
  return variants_->Find(scope.ns_id, key);
}

StoreStats Store::Stats() const {
  StoreStats stats;
  TierSnapshot host;
  host.kind = TierKind::kHost;
  for (const auto& pool : hosts_) {
    host.capacity_bytes += pool->capacity_bytes();
    host.used_bytes += pool->used_bytes();
  }
  TierSnapshot disk;
  disk.kind = TierKind::kNvme;
  TierSnapshot gpu;
  gpu.kind = TierKind::kGpu;
  {
    std::lock_guard lock(mu_);
    host.chunks = host_chunks_;
    host.pinned_chunks = host_pinned_chunks_;
    disk.chunks = disk_chunks_;
    gpu.chunks = gpu_chunks_;
    gpu.pinned_chunks = gpu_pinned_chunks_;
    stats.gpu.failed = gpu_failed_;
    stats.namespaces = static_cast<uint32_t>(namespaces_.size());
    stats.disk.failed = disk_failed_;
    stats.disk.full = disk_full_;
    stats.disk.variants_restored = variants_restored_;
    stats.disk.variant_records_skipped = variant_records_skipped_;
    stats.inflight_put_bytes = reserved_bytes_;
    stats.variants = variants_->variants();
    // Only chunks ever leased are walked; expired ones leave the list here (leases are never renewed
    // without a Lookup, which lists the chunk again).
    const int64_t now = NowNs();
    for (size_t i = 0; i < leased_.size();) {
      ChunkEntry* e = leased_[i];
      if (e->lease_until_ns.load(std::memory_order_relaxed) > now) {
        ++stats.leases_held;
        ++i;
      } else {
        UnlistLeaseLocked(e);  // moves the last entry into slot i
      }
    }
  }
  host.hits = host_hits_.load(std::memory_order_relaxed);
  host.evictions = host_evictions_.load(std::memory_order_relaxed);
  stats.tiers.push_back(host);
  // The NVMe and GPU tiers' snapshots: their own space, and their read and eviction counters.
  auto add_tier = [&](TierSnapshot t, const Tier& tier, const std::atomic<uint64_t>& hits,
                      const std::atomic<uint64_t>& evictions) {
    t.capacity_bytes = tier.capacity_bytes();
    t.used_bytes = tier.used_bytes();
    t.hits = hits.load(std::memory_order_relaxed);
    t.evictions = evictions.load(std::memory_order_relaxed);
    stats.tiers.push_back(t);
  };
  if (nvme_ != nullptr) {
    add_tier(disk, *nvme_, disk_hits_, disk_evictions_);
    DiskStats& d = stats.disk;
    d.enabled = true;
    d.direct_io = nvme_->direct_io();
    d.read_bytes = disk_read_bytes_.load(std::memory_order_relaxed);
    d.write_bytes = disk_write_bytes_.load(std::memory_order_relaxed);
    d.read_errors = disk_read_errors_.load(std::memory_order_relaxed);
    d.write_errors = disk_write_errors_.load(std::memory_order_relaxed);
    const auto regions = nvme_->CountRegions();
    d.regions_free = regions.free;
    d.regions_open = regions.open;
    d.regions_sealed = regions.sealed;
    d.promotions = promotions_.load(std::memory_order_relaxed);
    d.demotions = demotions_.load(std::memory_order_relaxed);
    d.admission_rejected = admission_rejected_.load(std::memory_order_relaxed);
    d.reinsertions = reinsertions_.load(std::memory_order_relaxed);
  }
  if (gpu_ != nullptr) {
    add_tier(gpu, *gpu_, gpu_hits_, gpu_evictions_);
    GpuStats& g = stats.gpu;
    g.enabled = true;
    g.device = gpu_->memory().name();
    g.read_bytes = gpu_read_bytes_.load(std::memory_order_relaxed);
    g.write_bytes = gpu_write_bytes_.load(std::memory_order_relaxed);
    g.read_errors = gpu_read_errors_.load(std::memory_order_relaxed);
    g.write_errors = gpu_write_errors_.load(std::memory_order_relaxed);
    g.promotions = gpu_promotions_.load(std::memory_order_relaxed);
    g.demotions = gpu_demotions_.load(std::memory_order_relaxed);
    g.dropped = gpu_dropped_.load(std::memory_order_relaxed);
  }
  stats.gpu.unavailable = gpu_unavailable_;
  stats.gpu.host_registered_bytes = host_registered_bytes_;
  stats.misses = misses_.load(std::memory_order_relaxed);
  stats.checksum_failures = checksum_failures_.load(std::memory_order_relaxed);
  stats.token_mismatches = token_mismatches_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace kvtier

namespace kvtier {

Status Store::CheckContainer(const PendingPut& put) const {
  const std::span<const std::byte> payload(put.payload_, put.expected_);
  auto info = codec::Inspect(payload);
  if (!info.ok()) {
    return InvalidArgument("chunk " + put.key_.ToHex() + ": payload is not a valid " +
                           std::string(codec::CodecName(put.codec_)) + " container: " + info.status().message());
  }
  if (info->codec != put.codec_) {
    return InvalidArgument("chunk " + put.key_.ToHex() + ": header says codec " +
                           std::string(codec::CodecName(put.codec_)) + ", the container holds " +
                           std::string(codec::CodecName(info->codec)));
  }
  if (!(info->shape == put.shape_)) {
    return InvalidArgument("chunk " + put.key_.ToHex() + ": container shape (" +
                           std::to_string(info->shape.num_layers) + " layers, " +
                           std::to_string(info->shape.num_kv_heads) + " heads, " +
                           std::to_string(info->shape.head_dim) + " dims, " + std::to_string(info->shape.num_tokens) +
                           " tokens, " + std::string(DTypeName(info->shape.dtype)) +
                           ") does not match the fingerprint and token ids");
  }
  if (info->profile_id != 0 && profiles_.Find(put.entry_->ns_id, info->profile_id) == nullptr) {
    char id[17];
    std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(info->profile_id));
    return FailedPrecondition("chunk " + put.key_.ToHex() + " references cachegen profile " + id +
                              ", which this namespace does not have: PutProfile it first");
  }
  return Status::Ok();
}

Result<StoredProfile> Store::PutProfile(const Scope& scope, std::string_view name, std::span<const std::byte> bytes) {
  if (scope.ns_id == 0) return FailedPrecondition("a profile put needs a scope opened for write");
  auto stored = profiles_.Put(scope.ns_id, name, bytes, scope.fingerprint);
  if (!stored.ok()) return stored.status();
  if (meta_ != nullptr) {
    // Chunks on disk may reference it after a restart: persist before acknowledging.
    KVTIER_RETURN_IF_ERROR(meta_->PutProfile(scope.ns_id, stored->profile->id(), stored->name, stored->sequence,
                                             stored->profile->serialized()));
  }
  return stored;
}

Result<StoredProfile> Store::GetProfile(const Scope& scope, std::string_view name, uint64_t id) const {
  if (!name.empty()) return profiles_.FindByName(scope.ns_id, name);
  return profiles_.FindById(scope.ns_id, id);
}

}  // namespace kvtier

namespace kvtier {

void Store::RegisterNamespaceLocked(const std::string& name, uint32_t id) {
  namespaces_.emplace(name, id);
  if (namespace_names_.size() < id) {
    namespace_names_.resize(id);
    namespace_bytes_.resize(id, 0);
  }
  namespace_names_[id - 1] = name;
  namespace_pools_.resize(namespace_names_.size(), 0);
  auto pool = shared_pools_.find(name);
  namespace_pools_[id - 1] = pool == shared_pools_.end() ? 0 : pool->second;
}

uint64_t Store::QuotaOf(const std::string& name_space) const {
  auto it = options_.namespace_quota_bytes.find(name_space);
  return it != options_.namespace_quota_bytes.end() ? it->second : options_.default_quota_bytes;
}

Status Store::ChargeLocked(uint32_t ns_id, uint64_t bytes, bool enforce) {
  uint64_t& held = namespace_bytes_[ns_id - 1];
  const std::string& name = namespace_names_[ns_id - 1];
  const uint64_t quota = QuotaOf(name);
  if (enforce && quota != 0 && held + bytes > quota) {
    const bool own = options_.namespace_quota_bytes.contains(name);
    return ResourceExhausted("namespace '" + name + "' holds " + std::to_string(held) + " bytes; a chunk of " +
                             std::to_string(bytes) + " would pass its quota of " + std::to_string(quota) + " bytes (" +
                             (own ? "quotas.namespaces." + name : std::string("quotas.default_bytes")) +
                             "); delete chunks or raise the quota");
  }
  held += bytes;
  return Status::Ok();
}

}  // namespace kvtier
