// The Store's NVMe side: warm start from the index, demotion, promotion, region reclaim, disk faults.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "chunk_table.h"
#include "dirty_list.h"
#include "entry_pool.h"
#include "kvtier/api/reuse.h"
#include "kvtier/kvstore/host_tier.h"
#include "kvtier/kvstore/log.h"
#include "kvtier/kvstore/store.h"
#include "nvme/disk_format.h"
#include "nvme/meta_store.h"
#include "nvme/nvme_tier.h"

namespace kvtier {
namespace {

constexpr uint64_t kPayloadAlign = 64;

disk::RecordHeader HeaderFor(const ChunkEntry& e, const Placement& p, uint32_t region, uint64_t sequence,
                             std::span<const std::byte> body) {
  disk::RecordHeader h{};
  h.region_generation = p.generation;
  h.region = region;
  h.ns_id = e.ns_id;
  h.fp_id = e.fp_id;
  h.num_tokens = e.num_tokens;
  const auto key = e.key.ToBytes();
  std::memcpy(h.key, key.data(), key.size());
  h.payload_bytes = e.payload_bytes;
  h.payload_checksum = e.checksum;
  h.tokens_checksum = Checksum64(body.subspan(0, uint64_t{e.num_tokens} * 4));
  h.base_position = e.base_position;
  h.codec = e.codec;
  h.sequence = sequence;
  return h;
}

DiskIndexEntry IndexEntryFor(const ChunkEntry& e, const Placement& p, uint32_t region) {
  DiskIndexEntry d;
  d.ns_id = e.ns_id;
  d.key = e.key;
  d.region = region;
  d.generation = p.generation;
  d.offset = p.offset;
  d.record_bytes = p.length;
  d.fp_id = e.fp_id;
  d.num_tokens = e.num_tokens;
  d.base_position = e.base_position;
  d.codec = e.codec;
  d.payload_bytes = e.payload_bytes;
  d.payload_checksum = e.checksum;
  return d;
}

// Checks a record read from disk against the entry that points at it.
Status VerifyRecord(const disk::RecordHeader& h, const ChunkEntry& e, const Placement& p, uint32_t region,
                    std::span<const std::byte> body) {
  KVTIER_RETURN_IF_ERROR(disk::VerifyHeader(h, region, p.generation, e.ns_id, e.key));
  if (h.fp_id != e.fp_id || h.num_tokens != e.num_tokens || h.payload_bytes != e.payload_bytes ||
      h.payload_checksum != e.checksum) {
    return DataLoss("record header disagrees with the index");
  }
  if (Checksum64(body.subspan(0, uint64_t{e.num_tokens} * 4)) != h.tokens_checksum) {
    return DataLoss("record token ids checksum mismatch");
  }
  if (Checksum64(body.subspan(e.payload_offset, e.payload_bytes)) != e.checksum) {
    return DataLoss("record payload checksum mismatch");
  }
  return Status::Ok();
}

}  // namespace

Status DiskOptions::Validate() const {
  if (region_bytes < (1ull << 20) || region_bytes % kDiskAlign != 0) {
    return InvalidArgument("disk.region_size must be a multiple of 4 KiB and at least 1 MiB");
  }
  if (capacity_bytes < 2 * region_bytes) return InvalidArgument("disk.capacity must hold at least two regions");
  if (queue_depth == 0 || queue_depth > 4096) return InvalidArgument("disk.queue_depth must be in [1, 4096]");
  if (reclaim != "fifo" && reclaim != "lru") return InvalidArgument("disk.reclaim must be fifo or lru");
  if (admission != "admit-all" && admission != "seen-twice" && admission != "write-budget") {
    return InvalidArgument("disk.admission must be admit-all, seen-twice or write-budget");
  }
  if (admission == "write-budget" && write_budget_bytes_per_day == 0) {
    return InvalidArgument("disk.write_budget_per_day must be > 0 with admission write-budget");
  }
  if (!(demote_watermark > 0.0 && demote_watermark <= 1.0)) {
    return InvalidArgument("disk.demote_watermark must be in (0, 1]");
  }
  if (demote_batch_bytes < (1ull << 20)) return InvalidArgument("disk.demote_batch_bytes must be at least 1 MiB");
  if (max_consecutive_errors == 0) return InvalidArgument("disk.max_consecutive_errors must be > 0");
  return Status::Ok();
}

Status Store::OpenDisk() {
  const DiskOptions& o = options_.disk;
  std::error_code ec;
  std::filesystem::create_directories(o.path, ec);
  if (ec) return Internal("cannot create disk directory " + o.path + ": " + ec.message());
  auto meta = MetaStore::Open(o.path + "/index");
  if (!meta.ok()) return meta.status();
  meta_ = std::move(meta).value();
  auto snapshot = meta_->Load();
  if (!snapshot.ok()) return snapshot.status();

  UringFileOptions file_options;
  file_options.size = o.capacity_bytes / o.region_bytes * o.region_bytes;
  file_options.queue_depth = o.queue_depth;
  file_options.try_direct = o.direct_io;
  auto file = OpenUringFile(o.path + "/kvtier.data", file_options);
  if (!file.ok()) return file.status();
  {
    // Only the main arena is registered (fixed buffers); shared arenas use plain reads and writes.
    const HostArena& arena = hosts_[0]->arena();
    const Status s = RegisterUringBuffers(file->get(), {arena.data(), arena.size()});
    if (!s.ok()) KVTIER_LOG(kWarning) << "nvme tier: host arena not registered with io_uring: " << s.message();
  }
  std::unique_ptr<BlockFile> data = std::move(file).value();
  if (o.wrap_file) data = o.wrap_file(std::move(data));
  NvmeTierOptions tier_options;
  tier_options.capacity_bytes = file_options.size;
  tier_options.region_bytes = o.region_bytes;
  tier_options.reclaim = o.reclaim == "lru" ? RegionReclaim::kLru : RegionReclaim::kFifo;
  nvme_ = std::make_unique<NvmeTier>(std::move(data), meta_.get(), tier_options, snapshot->region_generations);
  if (!nvme_->direct_io()) KVTIER_LOG(kWarning) << "nvme tier: running with buffered I/O (no O_DIRECT)";

  if (o.admission == "seen-twice") admission_ = MakeSeenTwice();
  else if (o.admission == "write-budget") admission_ = MakeWriteBudget(o.write_budget_bytes_per_day, [this] { return NowNs(); });
  else admission_ = MakeAdmitAll();

  // Warm start: namespaces and fingerprints keep their ids; chunks whose region moved on are stale.
  for (const auto& [id, name] : snapshot->namespaces) RegisterNamespaceLocked(name, id);
  for (const MetaStore::ProfileRecord& p : snapshot->profiles) {
    const Status s = profiles_.Restore(p.ns_id, p.name, p.sequence, AsBytes(p.bytes));
    // Its chunks then decode nowhere but still serve clients that have the profile.
    if (!s.ok()) KVTIER_LOG(kWarning) << "nvme tier: skipping stored profile '" << p.name << "': " << s.message();
  }
  uint32_t next_fp = 1;
  for (const auto& [id, fp] : snapshot->fingerprints) {
    if (id != next_fp++) return DataLoss("index fingerprint ids are not dense; the index is damaged");
    fingerprints_.push_back(fp);
    fingerprint_ids_.emplace(fp.Digest(), id);
  }
  if (namespaces_.size() != snapshot->namespaces.size()) return DataLoss("index has duplicate namespaces");
  std::vector<std::pair<uint32_t, ChunkKey>> stale;
  for (const DiskIndexEntry& d : snapshot->chunks) {
    const Placement p{d.offset, d.record_bytes, d.generation};
    const bool known = d.fp_id >= 1 && d.fp_id <= fingerprints_.size() && snapshot->namespaces.contains(d.ns_id);
    if (!known || d.record_bytes != disk::RecordBytes(d.num_tokens, d.payload_bytes) ||
        nvme_->RegionOf(p) != d.region || table_->Find(d.ns_id, d.key) != nullptr || !nvme_->Adopt(p)) {
      stale.emplace_back(d.ns_id, d.key);
      continue;
    }
    // What was stored before a restart counts, even past a quota lowered since.
    (void)ChargeLocked(d.ns_id, d.payload_bytes, /*enforce=*/false);
    ChunkEntry* e = pool_->Acquire();
    e->key = d.key;
    e->ns_id = d.ns_id;
    e->fp_id = d.fp_id;
    e->num_tokens = d.num_tokens;
    e->base_position = d.base_position;
    e->codec = d.codec;
    e->host_pool = PoolOfLocked(d.ns_id);
    e->payload_bytes = d.payload_bytes;
    e->checksum = d.payload_checksum;
    e->payload_offset = disk::AlignUp(uint64_t{d.num_tokens} * 4, kPayloadAlign);
    e->disk = p;
    e->on_disk = true;
    e->indexed = true;
    e->refs.store(1, std::memory_order_relaxed);
    table_->Insert(e);
    ++disk_chunks_;
  }
  if (!stale.empty()) KVTIER_RETURN_IF_ERROR(meta_->DeleteChunks(stale));
  RestoreVariants(std::move(snapshot->variants), snapshot->variants_unreadable);
  KVTIER_LOG(kInfo) << "nvme tier: " << o.path << ", " << nvme_->capacity_bytes() / o.region_bytes << " regions of "
                    << o.region_bytes << " bytes, " << disk_chunks_ << " chunks from the index ("
                    << stale.size() << " stale dropped), " << (nvme_->direct_io() ? "O_DIRECT" : "buffered")
                    << ", admission " << admission_->name() << ", reclaim " << o.reclaim;
  if (o.background_demotion) demoter_ = std::thread([this] { DemoterLoop(); });
  return Status::Ok();
}

// Records are restored newest put first, so a group keeps its latest max_variants. A record whose chunk is
// not in the disk index (it never reached disk, or left since) is dropped silently; one that disagrees
// with its chunk is dropped with a warning, like one that did not parse.
void Store::RestoreVariants(std::vector<DiskVariantRecord> records, uint64_t unreadable) {
  std::sort(records.begin(), records.end(),
            [](const DiskVariantRecord& a, const DiskVariantRecord& b) { return a.put_seq > b.put_seq; });
  uint64_t inconsistent = 0;
  for (const DiskVariantRecord& r : records) {
    bool consistent = true;
    if (RestoreVariantLocked(r, &consistent)) {
      ++variants_restored_;
      continue;
    }
    if (!consistent) ++inconsistent;
    NoteMetaResult(meta_->DeleteVariant(r.ns_id, r.variant_key));
  }
  variant_records_skipped_ = unreadable + inconsistent;
  if (variant_records_skipped_ > 0) {
    KVTIER_LOG(kWarning) << "nvme tier: skipped " << variant_records_skipped_ << " corrupt variant records ("
                         << unreadable << " unreadable, " << inconsistent << " inconsistent with their chunk)";
  }
  KVTIER_LOG(kInfo) << "nvme tier: " << variants_restored_ << " variants re-indexed, "
                    << records.size() - variants_restored_ - inconsistent
                    << " variant records dropped (chunk not on disk, or group full)";
}

// False: not indexed; `consistent` false when the record cannot describe its chunk.
bool Store::RestoreVariantLocked(const DiskVariantRecord& r, bool* consistent) {
  const ChunkEntry* e = table_->Find(r.ns_id, r.variant_key);
  if (e == nullptr) return false;
  *consistent = e->fp_id == r.fp_id && VariantKey(r.meta.content_key, r.meta.context) == r.variant_key &&
                r.meta.Validate(fingerprints_[e->fp_id - 1].num_layers, e->num_tokens).ok();
  if (!*consistent || !variants_->Restore(r.ns_id, r.fp_id, r.variant_key, std::make_shared<const VariantMeta>(r.meta),
                                          r.put_seq)) {
    return false;
  }
  has_variants_.store(true, std::memory_order_relaxed);
  return true;
}

void Store::Stop() {
  {
    std::lock_guard lock(demote_mu_);
    stopping_ = true;
  }
  demote_cv_.notify_all();
  if (demoter_.joinable()) demoter_.join();
}

bool Store::DiskWritableLocked() const { return nvme_ != nullptr && !disk_failed_ && !disk_full_; }

bool Store::DemotableLocked(const ChunkEntry& e) const {
  return DiskWritableLocked() && !e.admission_refused && !e.demoting &&
         disk::RecordBytes(e.num_tokens, e.payload_bytes) <= options_.disk.region_bytes;
}

void Store::NoteMetaResult(const Status& status) {
  if (status.ok()) return;  // index writes do not end a streak of device errors
  disk_write_errors_.fetch_add(1, std::memory_order_relaxed);
  if (status.code() == StatusCode::kResourceExhausted) {
    if (!disk_full_) KVTIER_LOG(kError) << "nvme tier: index out of space, demotion stops: " << status.message();
    disk_full_ = true;
    return;
  }
  KVTIER_LOG(kWarning) << "nvme tier: index write error: " << status.message();
}

void Store::NoteDiskResult(const Status& status, bool write) {
  if (status.ok()) {
    disk_consecutive_errors_ = 0;
    return;
  }
  (write ? disk_write_errors_ : disk_read_errors_).fetch_add(1, std::memory_order_relaxed);
  if (status.code() == StatusCode::kResourceExhausted) {
    if (!disk_full_) KVTIER_LOG(kError) << "nvme tier: out of space, demotion stops: " << status.message();
    disk_full_ = true;
    return;
  }
  KVTIER_LOG(kWarning) << "nvme tier: " << (write ? "write" : "read") << " error: " << status.message();
  if (++disk_consecutive_errors_ >= options_.disk.max_consecutive_errors && !disk_failed_) {
    DisableDiskLocked(std::to_string(disk_consecutive_errors_) + " I/O errors in a row, last: " + status.message());
  }
}

void Store::DisableDiskLocked(const std::string& why) {
  disk_failed_ = true;
  KVTIER_LOG(kError) << "nvme tier disabled: " << why << "; the host tier keeps serving";
  // Chunks only on disk become misses; chunks also in DRAM or on the GPU keep that copy.
  std::vector<ChunkEntry*> disk_only, both;
  table_->ForEach([&](ChunkEntry& e) { (e.in_host || e.in_gpu ? both : disk_only).push_back(&e); });
  for (ChunkEntry* e : both) {
    if (e->on_disk) {
      e->on_disk = false;
      --disk_chunks_;
    }
  }
  for (ChunkEntry* e : disk_only) {
    table_->Erase(e);
    e->indexed = false;
    UnlistLeaseLocked(e);
    e->on_disk = false;
    --disk_chunks_;
    UnrefLocked(e);
  }
}

Result<bool> Store::BringToHost(ChunkEntry* e, TierKind* from) {
  if (*from == TierKind::kGpu) {
    auto promoted = PromoteFromGpu(e);
    if (promoted.ok() && *promoted) return true;
    *from = TierKind::kNvme;  // the GPU copy failed or is gone: the disk copy, if there is one
  }
  return Promote(e);
}

Result<bool> Store::Promote(ChunkEntry* e) {
  Placement disk_placement;
  Placement host_placement;
  {
    std::lock_guard lock(mu_);
    if (e->in_host) return true;  // promoted by another reader meanwhile
    if (!e->on_disk || disk_failed_ || !nvme_->BeginRead(e->disk)) return false;
    disk_placement = e->disk;
    // Reads never wait for disk writes: a promotion may drop a cold chunk the demoter has not reached.
    auto placement = AllocateHostLocked(disk::AlignUp(e->payload_offset + e->payload_bytes, kDiskAlign),
                                        /*may_drop=*/true, e->host_pool);
    if (!placement.ok()) {
      nvme_->EndRead(disk_placement);
      return placement.status();
    }
    host_placement = *placement;
  }
  HostTier& host = HostOf(e->host_pool);
  std::span<std::byte> body = host.Map(host_placement);
  disk::RecordHeader header{};
  Status s = nvme_->ReadRecord(disk_placement, &header, body);
  nvme_->EndRead(disk_placement);
  if (s.ok()) disk_read_bytes_.fetch_add(disk_placement.length, std::memory_order_relaxed);
  const uint32_t region = nvme_->RegionOf(disk_placement);
  const Status verified = s.ok() ? VerifyRecord(header, *e, disk_placement, region, body) : s;
  std::lock_guard lock(mu_);
  NoteDiskResult(s, /*write=*/false);
  if (!verified.ok()) {
    host.Free(host_placement);
    if (s.ok()) {
      checksum_failures_.fetch_add(1, std::memory_order_relaxed);
      KVTIER_LOG(kWarning) << "nvme tier: chunk " << e->key.ToHex() << " dropped: " << verified.message();
    }
    if (e->indexed && !e->in_host) RemoveLocked(e);
    return false;
  }
  if (e->in_host) {
    host.Free(host_placement);  // another reader promoted it first
    return true;
  }
  AddHostCopyLocked(e, host_placement);
  if (!e->indexed) return true;  // deleted meanwhile: the copy serves this reader only, then is freed
  e->hit_on_disk = true;
  nvme_->NoteHit(disk_placement);
  promotions_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Store::DemoterLoop() {
  std::unique_lock lock(demote_mu_);
  while (!stopping_) {
    demote_cv_.wait_for(lock, std::chrono::milliseconds(50));
    if (stopping_) break;
    lock.unlock();
    while (DemoteBatch(/*force=*/false) > 0) {
    }
    lock.lock();
  }
}

uint64_t Store::DemoteAll() {
  uint64_t total = 0;
  for (uint64_t n; (n = DemoteBatch(/*force=*/true)) > 0;) total += n;
  return total;
}

Result<Placement> Store::AllocateDisk(uint64_t bytes) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto placement = nvme_->Allocate(bytes);
    if (placement.ok() || placement.status().message().find("no free region") == std::string::npos) {
      return placement;
    }
    KVTIER_RETURN_IF_ERROR(ReclaimRegion());
  }
  return ResourceExhausted("nvme tier: no region could be reclaimed");
}

uint64_t Store::DemoteBatch(bool force, int pool) {
  struct Item {
    ChunkEntry* entry;
    Placement placement;
  };
  std::vector<Item> batch;
  {
    std::lock_guard lock(mu_);
    if (!DiskWritableLocked()) return 0;
    if (!force && !AboveDemoteWatermark()) return 0;
    uint64_t bytes = 0;
    for (ChunkEntry* e = dirty_->coldest(); e != nullptr && bytes < options_.disk.demote_batch_bytes;) {
      ChunkEntry* next = DirtyList::warmer(e);
      if (e->demoting || (pool >= 0 && e->host_pool != pool)) {
        e = next;
        continue;
      }
      const uint64_t record = disk::RecordBytes(e->num_tokens, e->payload_bytes);
      if (record > options_.disk.region_bytes) {
        dirty_->Remove(e);  // too large for the tier: stays in DRAM only
      } else if (!admission_->Admit({e->key, e->ns_id, record, e->hits})) {
        e->admission_refused = true;
        dirty_->Remove(e);  // asked again only after the chunk is read
        admission_rejected_.fetch_add(1, std::memory_order_relaxed);
      } else {
        e->demoting = true;
        e->refs.fetch_add(1, std::memory_order_acq_rel);  // keeps the host copy while we write it
        batch.push_back({e, {}});
        bytes += record;
      }
      e = next;
    }
  }
  if (batch.empty()) return 0;

  Status status;
  bool wrote = false;  // whether device I/O was attempted (allocation failures are not device errors)
  std::vector<RecordWrite> writes;
  writes.reserve(batch.size());
  for (Item& item : batch) {
    ChunkEntry& e = *item.entry;
    auto placement = AllocateDisk(disk::RecordBytes(e.num_tokens, e.payload_bytes));
    if (!placement.ok()) {
      status = placement.status();
      break;
    }
    item.placement = *placement;
    // The host copy is [tokens][pad][payload] zero-padded to a block: exactly the record body.
    std::span<const std::byte> body = HostOf(e.host_pool).Map(e.host).subspan(0, item.placement.length - disk::kHeaderBlock);
    const uint32_t region = nvme_->RegionOf(item.placement);
    writes.push_back({item.placement, HeaderFor(e, item.placement, region, nvme_->next_sequence(), body), body});
  }
  if (status.ok()) {
    wrote = true;
    status = nvme_->WriteRecords(writes);
    if (status.ok()) {
      for (const RecordWrite& w : writes) disk_write_bytes_.fetch_add(w.placement.length, std::memory_order_relaxed);
    }
  }
  uint64_t demoted = 0;
  std::lock_guard lock(mu_);
  // The index entries go to RocksDB under the lock, so a concurrent delete cannot be undone by them.
  std::vector<DiskIndexEntry> index;
  if (status.ok()) {
    for (const Item& item : batch) {
      if (item.entry->indexed) index.push_back(IndexEntryFor(*item.entry, item.placement, nvme_->RegionOf(item.placement)));
    }
    NoteDiskResult(status, /*write=*/true);  // the device write succeeded
    status = meta_->PutChunks(index);
    NoteMetaResult(status);
  } else if (wrote) {
    NoteDiskResult(status, /*write=*/true);
  } else {
    KVTIER_LOG(kWarning) << "nvme tier: demotion skipped: " << status.message();
  }
  for (const Item& item : batch) {
    ChunkEntry* e = item.entry;
    e->demoting = false;
    const bool placed = item.placement.length > 0;
    if (status.ok() && e->indexed) {
      e->disk = item.placement;
      e->on_disk = true;
      e->hit_on_disk = false;
      dirty_->Remove(e);
      ++disk_chunks_;
      ++demoted;
    } else if (placed) {
      nvme_->Free(item.placement);
    }
    if (placed) nvme_->FinishWrite(item.placement);
    UnrefLocked(e);
  }
  demotions_.fetch_add(demoted, std::memory_order_relaxed);
  return status.ok() ? std::max<uint64_t>(demoted, 1) : 0;
}

Status Store::ReclaimRegion() {
  std::lock_guard reclaim(reclaim_mu_);
  const auto victim = nvme_->PickVictim();
  if (!victim) return ResourceExhausted("nvme tier: every region is open or being read");
  // Chunks in the victim region: those also in DRAM or on the GPU lose only their disk copy; those read
  // from disk while there are kept (reinsertion); the rest leave the cache.
  struct Hot {
    ChunkEntry* entry;
    Placement old_placement;
    uint64_t scratch_offset;
  };
  std::vector<Hot> hot;
  uint64_t scratch_bytes = 0;
  {
    std::lock_guard lock(mu_);
    std::vector<ChunkEntry*> in_region;
    table_->ForEach([&](ChunkEntry& e) {
      if (e.on_disk && nvme_->RegionOf(e.disk) == *victim) in_region.push_back(&e);
    });
    for (ChunkEntry* e : in_region) {
      if (e->in_host || e->in_gpu) {
        DropDiskCopyLocked(e);
      } else if (e->hit_on_disk && options_.disk.reinsert_hits) {
        e->refs.fetch_add(1, std::memory_order_acq_rel);
        hot.push_back({e, e->disk, scratch_bytes});
        scratch_bytes += e->disk.length - disk::kHeaderBlock;
      } else {
        disk_evictions_.fetch_add(1, std::memory_order_relaxed);
        RemoveLocked(e);
      }
    }
  }
  // Read the hot records before the region is reset; a record that does not verify is dropped.
  std::unique_ptr<std::byte, decltype(&std::free)> scratch(
      hot.empty() ? nullptr : static_cast<std::byte*>(std::aligned_alloc(kDiskAlign, scratch_bytes)), &std::free);
  std::vector<Status> read_status(hot.size());
  for (size_t i = 0; i < hot.size(); ++i) {
    const Hot& h = hot[i];
    std::span<std::byte> body{scratch.get() + h.scratch_offset, h.old_placement.length - disk::kHeaderBlock};
    disk::RecordHeader header{};
    read_status[i] = nvme_->ReadRecord(h.old_placement, &header, body);
    if (read_status[i].ok()) {
      disk_read_bytes_.fetch_add(h.old_placement.length, std::memory_order_relaxed);
      read_status[i] = VerifyRecord(header, *h.entry, h.old_placement, *victim, body);
    }
  }
  // A reader that found its chunk just before the drop may still be reading the region: wait for it.
  while (!nvme_->ResetRegion(*victim).ok()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  // Append the hot records again (possibly into the region just freed).
  for (size_t i = 0; i < hot.size(); ++i) {
    ChunkEntry* e = hot[i].entry;
    std::span<const std::byte> body{scratch.get() + hot[i].scratch_offset,
                                    hot[i].old_placement.length - disk::kHeaderBlock};
    Status s = read_status[i];
    Placement placement;
    if (s.ok()) {
      auto allocated = nvme_->Allocate(hot[i].old_placement.length);
      s = allocated.status();
      if (s.ok()) {
        placement = *allocated;
        RecordWrite w{placement, HeaderFor(*e, placement, nvme_->RegionOf(placement), nvme_->next_sequence(), body),
                      body};
        s = nvme_->WriteRecords({&w, 1});
      }
    }
    std::lock_guard lock(mu_);
    const bool current = e->indexed && e->on_disk && e->disk.offset == hot[i].old_placement.offset &&
                         e->disk.generation == hot[i].old_placement.generation;
    if (s.ok() && current) {
      const DiskIndexEntry d = IndexEntryFor(*e, placement, nvme_->RegionOf(placement));
      s = meta_->PutChunks({&d, 1});
      NoteMetaResult(s);
    }
    if (s.ok() && current) {
      e->disk = placement;
      e->hit_on_disk = false;
      reinsertions_.fetch_add(1, std::memory_order_relaxed);
      disk_write_bytes_.fetch_add(placement.length, std::memory_order_relaxed);
    } else {
      if (placement.length > 0) nvme_->Free(placement);
      if (current) {
        disk_evictions_.fetch_add(1, std::memory_order_relaxed);
        if (e->in_host || e->in_gpu) DropDiskCopyLocked(e);
        else RemoveLocked(e);
      }
    }
    if (placement.length > 0) nvme_->FinishWrite(placement);
    UnrefLocked(e);
  }
  return Status::Ok();
}

}  // namespace kvtier
