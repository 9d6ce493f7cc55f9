// The Store's GPU side: opening the tier and pinning the host arenas, the copy a put makes at commit, room
// made on the GPU (a GPU-only chunk moves to DRAM), reads of GPU-only chunks, and copy faults.
//
// A GPU placement holds a chunk's body as host DRAM does ([token ids][pad][payload]), so either copy can
// stand in for the other. A GPU placement is freed only while no copy out of it is in flight (gpu_copies),
// or once the tier is disabled, which takes no new placements.
#include <cstring>

#include "chunk_table.h"
#include "gpu_list.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/host_gather.h"
#include "kvtier/kvstore/gpu_tier.h"
#include "kvtier/kvstore/host_tier.h"
#include "kvtier/kvstore/log.h"
#include "kvtier/kvstore/store.h"

namespace kvtier {
namespace {

uint64_t BodyBytes(const ChunkEntry& e) { return e.payload_offset + e.payload_bytes; }

// The bytes past the body in a host placement are zero, as a put leaves them: a disk record written from
// the placement later carries no stale bytes.
void ZeroTail(std::span<std::byte> placement, uint64_t body) {
  std::memset(placement.data() + body, 0, placement.size() - body);
}

}  // namespace

Status GpuOptions::Validate() const {
  if (capacity_bytes != 0 && capacity_bytes < (1ull << 20)) {
    return InvalidArgument("gpu_tier.capacity must be 0 or at least 1 MiB");
  }
  if (device < 0) return InvalidArgument("gpu_tier.device must be >= 0");
  if (placement != "on-request" && placement != "all") {
    return InvalidArgument("gpu_tier.placement must be on-request or all");
  }
  if (max_consecutive_errors == 0) return InvalidArgument("gpu_tier.max_consecutive_errors must be > 0");
  return Status::Ok();
}

void Store::RegisterHostArenas() {
  if (!gpu::GpuAvailable()) {
    KVTIER_LOG(kDebug) << "host tier: not registered with CUDA (" << gpu::CachedProbe().reason << ")";
    return;
  }
  for (const auto& host : hosts_) {
    const HostArena& arena = host->arena();
    auto registration = gpu::HostRegistration::Register(arena.data(), arena.size());
    if (!registration.ok()) {
      KVTIER_LOG(kWarning) << "host tier: arena of " << arena.size()
                           << " bytes not registered with CUDA, GPU copies will be staged: "
                           << registration.status().message();
      continue;
    }
    host_registered_bytes_ += arena.size();
    host_registrations_.push_back(std::move(registration).value());
  }
  KVTIER_LOG(kInfo) << "host tier: " << host_registered_bytes_ << " bytes registered with CUDA (pinned)";
}

void Store::OpenGpu() {
  const GpuOptions& o = options_.gpu;
  auto memory =
      o.open_device ? o.open_device(o.device, o.capacity_bytes) : OpenCudaDeviceMemory(o.device, o.capacity_bytes);
  if (!memory.ok()) {
    gpu_unavailable_ = memory.status().message();
    KVTIER_LOG(kWarning) << "gpu tier: not started, running without it: " << gpu_unavailable_;
    return;
  }
  gpu_ = std::make_unique<GpuTier>(std::move(memory).value());
  gpu_all_puts_ = o.placement == "all";
  KVTIER_LOG(kInfo) << "gpu tier: " << gpu_->capacity_bytes() << " bytes on " << gpu_->memory().name()
                    << ", placement " << o.placement;
  auto exported = gpu_->memory().ExportIpc();
  if (exported.ok()) {
    gpu_ipc_export_ = GpuIpcArena{std::move(exported).value(), gpu_->memory().size()};
  } else {
    gpu_ipc_export_ = exported.status();
    KVTIER_LOG(kWarning) << "gpu tier: not exported by CUDA IPC (same-node workers read chunks from DRAM): "
                         << exported.status().message();
  }
}

Result<Store::GpuIpcArena> Store::GpuIpcExport() const {
  std::lock_guard lock(mu_);
  if (gpu_failed_) return Unavailable("the gpu tier was disabled");
  return gpu_ipc_export_;
}

std::optional<uint64_t> Store::HoldGpuCopy(const ChunkRef& ref) {
  std::lock_guard lock(mu_);
  ChunkEntry* e = ref.entry_;
  if (e == nullptr || !e->in_gpu || gpu_failed_) return std::nullopt;
  ++e->gpu_copies;  // a copy out of the placement may be in flight: neither evicted nor freed meanwhile
  return e->gpu.offset + e->payload_offset;
}

void Store::ReleaseGpuCopy(const ChunkRef& ref) {
  std::lock_guard lock(mu_);
  if (ref.entry_ != nullptr && ref.entry_->gpu_copies > 0) --ref.entry_->gpu_copies;
}

Result<Store::GpuLinkInfo> Store::GpuLink() const {
  std::lock_guard lock(mu_);
  if (gpu_ == nullptr) {
    return FailedPrecondition("this server has no GPU tier" +
                              (gpu_unavailable_.empty() ? std::string() : " (" + gpu_unavailable_ + ")"));
  }
  if (gpu_failed_) return FailedPrecondition("the GPU tier was disabled");
  const DeviceMemory& memory = gpu_->memory();
  return GpuLinkInfo{memory.peer_link_kind(), memory.device(), memory.name()};
}

Result<Store::GpuCopyHit> Store::GetGpuCopy(const Scope& scope, const ChunkKey& key) {
  GpuCopyHit hit;
  std::lock_guard lock(mu_);
  ChunkEntry* e = scope.ns_id == 0 ? nullptr : table_->Find(scope.ns_id, key);
  if (e == nullptr) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return hit;
  }
  KVTIER_RETURN_IF_ERROR(CheckFingerprintLocked(scope, *e));
  hit.found = true;
  // Not counted as a hit here: the caller reads such a chunk through Get.
  if (!e->in_gpu || gpu_failed_) return hit;
  e->refs.fetch_add(1, std::memory_order_acq_rel);
  ++e->hits;
  ++e->gpu_copies;  // a send out of the placement is in flight: neither evicted nor freed meanwhile
  gpu_lru_->Touch(e);
  gpu_hits_.fetch_add(1, std::memory_order_relaxed);
  hit.ref.store_ = this;
  hit.ref.entry_ = e;  // not bound to a host copy: payload() is empty, entry() is what the caller needs
  hit.offset = e->gpu.offset + e->payload_offset;
  return hit;
}

Status Store::SendGpuCopy(gpu::PeerLink& link, uint64_t offset, uint64_t bytes) {
  // The hold (HoldGpuCopy) keeps the placement; a disabled tier allocates nothing more, so the bytes stay.
  if (gpu_ == nullptr) return FailedPrecondition("this server has no GPU tier");
  return gpu_->memory().SendOver(link, offset, bytes);
}

bool Store::CopyToGpu(ChunkEntry* e) {
  const uint64_t body = BodyBytes(*e);
  auto placement = AllocateGpu(body);
  Status s = placement.status();
  // The reference keeps the host copy where it is while we read it.
  if (s.ok()) s = gpu_->Write(*placement, 0, HostOf(e->host_pool).Map(e->host).first(body));
  std::lock_guard lock(mu_);
  if (placement.ok()) NoteGpuResult(s, /*to_device=*/true);
  if (s.ok()) gpu_write_bytes_.fetch_add(body, std::memory_order_relaxed);
  const bool placed = s.ok() && e->indexed && !e->in_gpu && !gpu_failed_;
  if (placed) AddGpuCopyLocked(e, *placement);
  else if (placement.ok()) gpu_->Free(*placement);
  UnrefLocked(e);
  return placed;
}

Result<Placement> Store::AllocateGpu(uint64_t bytes) {
  if (bytes > gpu_->capacity_bytes()) {
    return ResourceExhausted("chunk body of " + std::to_string(bytes) + " bytes is larger than the gpu tier");
  }
  for (;;) {
    ChunkEntry* victim = nullptr;
    {
      std::lock_guard lock(mu_);
      if (gpu_failed_) return Unavailable("gpu tier disabled");
      auto placement = gpu_->Allocate(bytes);
      if (placement.ok()) return placement;
      victim = PickGpuVictimLocked();
      if (victim == nullptr) return ExhaustedGpuLocked(bytes);
      if (victim->in_host || victim->on_disk) {
        gpu_evictions_.fetch_add(1, std::memory_order_relaxed);
        DropGpuCopyLocked(victim);  // another copy survives: nothing to move
        continue;
      }
      ++victim->gpu_copies;
      victim->refs.fetch_add(1, std::memory_order_acq_rel);
    }
    KVTIER_RETURN_IF_ERROR(DemoteFromGpu(victim));
  }
}

ChunkEntry* Store::PickGpuVictimLocked() const {
  const int64_t now = NowNs();
  for (ChunkEntry* e = gpu_lru_->coldest(); e != nullptr; e = GpuList::warmer(e)) {
    if (e->gpu_copies == 0 && e->lease_until_ns.load(std::memory_order_relaxed) <= now) return e;
  }
  return nullptr;
}

Status Store::ExhaustedGpuLocked(uint64_t bytes) const {
  return ResourceExhausted("gpu tier full: no room for " + std::to_string(bytes) + " bytes (capacity " +
                           std::to_string(gpu_->capacity_bytes()) + ", used " + std::to_string(gpu_->used_bytes()) +
                           ") and nothing evictable: " + std::to_string(gpu_pinned_chunks_) +
                           " chunks pinned, the rest leased or being copied");
}

Status Store::DemoteFromGpu(ChunkEntry* e) {
  const uint64_t body = BodyBytes(*e);
  const uint8_t pool = e->host_pool;
  Placement from;
  Result<Placement> host = Placement{};
  {
    std::unique_lock lock(mu_);
    if (gpu_failed_ || !e->in_gpu) {
      // The tier was disabled (or the copy dropped) since the victim was picked: nothing to move.
      --e->gpu_copies;
      UnrefLocked(e);
      return Status::Ok();
    }
    from = e->gpu;
    host = AllocateHostLikePutLocked(lock, body, pool);
    if (!host.ok()) {
      --e->gpu_copies;
      // DRAM has no room for its only copy: the chunk leaves the cache (its placements go with the reference).
      if (e->indexed && !e->in_host && !e->on_disk) {
        KVTIER_LOG(kWarning) << "gpu tier: chunk " << e->key.ToHex() << " evicted with no other copy: "
                             << host.status().message();
        gpu_evictions_.fetch_add(1, std::memory_order_relaxed);
        gpu_dropped_.fetch_add(1, std::memory_order_relaxed);
        RemoveLocked(e);
      }
      UnrefLocked(e);
      return Status::Ok();
    }
  }
  std::span<std::byte> mem = HostOf(pool).Map(*host);
  const Status s = gpu_->Read(from, 0, mem.first(body));
  ZeroTail(mem, body);
  std::lock_guard lock(mu_);
  NoteGpuResult(s, /*to_device=*/false);
  --e->gpu_copies;
  if (s.ok() && e->indexed && !e->in_host) {
    gpu_read_bytes_.fetch_add(body, std::memory_order_relaxed);
    gpu_demotions_.fetch_add(1, std::memory_order_relaxed);
    AddHostCopyLocked(e, *host);
  } else {
    HostOf(pool).Free(*host);  // failed, deleted meanwhile, or a reader promoted it first
  }
  if (e->indexed && e->in_gpu && e->gpu_copies == 0 && (e->in_host || e->on_disk)) {
    gpu_evictions_.fetch_add(1, std::memory_order_relaxed);
    DropGpuCopyLocked(e);
  }
  UnrefLocked(e);
  if (!s.ok()) return Status(s.code(), "gpu tier: moving chunk " + e->key.ToHex() + " to DRAM: " + s.message());
  return Status::Ok();
}

Result<bool> Store::PromoteFromGpu(ChunkEntry* e) {
  const uint64_t body = BodyBytes(*e);
  Placement from, host;
  {
    std::lock_guard lock(mu_);
    if (e->in_host) return true;  // promoted by another reader meanwhile
    if (!e->in_gpu) return false;
    // Reads never wait for disk writes, as for promotions from disk.
    auto placement = AllocateHostLocked(body, /*may_drop=*/true, e->host_pool);
    if (!placement.ok()) return placement.status();
    host = *placement;
    from = e->gpu;
    ++e->gpu_copies;
  }
  HostTier& tier = HostOf(e->host_pool);
  std::span<std::byte> mem = tier.Map(host);
  const Status s = gpu_->Read(from, 0, mem.first(body));
  ZeroTail(mem, body);
  std::lock_guard lock(mu_);
  NoteGpuResult(s, /*to_device=*/false);
  --e->gpu_copies;
  if (!s.ok()) {
    tier.Free(host);
    return Status(s.code(), "gpu tier: reading chunk " + e->key.ToHex() + " back to DRAM: " + s.message());
  }
  gpu_read_bytes_.fetch_add(body, std::memory_order_relaxed);
  if (e->in_host) {
    tier.Free(host);  // another reader promoted it first
    return true;
  }
  AddHostCopyLocked(e, host);
  if (e->indexed) gpu_promotions_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

Result<Placement> Store::AllocateHostLikePutLocked(std::unique_lock<std::mutex>& lock, uint64_t bytes,
                                                  uint8_t pool) {
  for (int attempt = 0;; ++attempt) {
    auto placement = AllocateHostLocked(bytes, /*may_drop=*/attempt >= 4, pool);
    if (placement.ok() || placement.status().code() != StatusCode::kAborted) return placement;
    lock.unlock();
    if (DemoteBatch(/*force=*/true, pool) == 0) attempt = 4;
    lock.lock();
  }
}

void Store::AddGpuCopyLocked(ChunkEntry* e, const Placement& placement) {
  e->gpu = placement;
  e->in_gpu = true;
  ++gpu_chunks_;
  if (e->pinned) ++gpu_pinned_chunks_;
  else gpu_lru_->PushFront(e);
}

void Store::UncountGpuCopyLocked(ChunkEntry* e) {
  if (e->pinned) --gpu_pinned_chunks_;
  else gpu_lru_->Remove(e);
  --gpu_chunks_;
}

void Store::DropGpuCopyLocked(ChunkEntry* e) {
  UncountGpuCopyLocked(e);
  gpu_->Free(e->gpu);
  e->gpu = {};
  e->in_gpu = false;
}

void Store::NoteGpuResult(const Status& status, bool to_device) {
  if (status.ok()) {
    gpu_consecutive_errors_ = 0;
    return;
  }
  (to_device ? gpu_write_errors_ : gpu_read_errors_).fetch_add(1, std::memory_order_relaxed);
  KVTIER_LOG(kWarning) << "gpu tier: copy " << (to_device ? "to" : "from")
                       << " the device failed: " << status.message();
  if (++gpu_consecutive_errors_ >= options_.gpu.max_consecutive_errors && !gpu_failed_) {
    DisableGpuLocked(std::to_string(gpu_consecutive_errors_) + " copy errors in a row, last: " + status.message());
  }
}

void Store::DisableGpuLocked(const std::string& why) {
  gpu_failed_ = true;
  KVTIER_LOG(kError) << "gpu tier disabled: " << why << "; the other tiers keep serving";
  // Chunks with another copy keep it; chunks only on the GPU become misses. Placements can be freed even
  // under a copy in flight: the disabled tier hands out no new ones, so nothing overwrites them.
  std::vector<ChunkEntry*> gpu_only;
  table_->ForEach([&](ChunkEntry& e) {
    if (!e.in_gpu) return;
    if (!e.in_host && !e.on_disk) gpu_only.push_back(&e);
    DropGpuCopyLocked(&e);
  });
  gpu_dropped_.fetch_add(gpu_only.size(), std::memory_order_relaxed);
  for (ChunkEntry* e : gpu_only) RemoveLocked(e);
}

}  // namespace kvtier
