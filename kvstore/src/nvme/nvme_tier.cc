#include "nvme/nvme_tier.h"

#include <cstdlib>
#include <cstring>

namespace kvtier {
namespace {

// A reusable block-aligned scratch area per thread for header blocks (a few KiB per record).
std::span<std::byte> HeaderScratch(size_t blocks) {
  struct Scratch {
    std::byte* data = nullptr;
    size_t blocks = 0;
    ~Scratch() { std::free(data); }
  };
  thread_local Scratch scratch;
  if (scratch.blocks < blocks) {
    std::free(scratch.data);
    scratch.blocks = std::max<size_t>(blocks, 16);
    scratch.data = static_cast<std::byte*>(std::aligned_alloc(kDiskAlign, scratch.blocks * kDiskAlign));
  }
  return {scratch.data, blocks * kDiskAlign};
}

}  // namespace

NvmeTier::NvmeTier(std::unique_ptr<BlockFile> file, MetaStore* meta, const NvmeTierOptions& options,
                   const std::map<uint32_t, uint64_t>& generations)
    : file_(std::move(file)), meta_(meta), options_(options) {
  regions_.resize(file_->size() / options_.region_bytes);
  for (const auto& [region, gen] : generations) {
    if (region < regions_.size()) regions_[region].generation = gen;
  }
}

uint64_t NvmeTier::capacity_bytes() const { return regions_.size() * options_.region_bytes; }

uint64_t NvmeTier::used_bytes() const {
  std::lock_guard lock(mu_);
  return live_bytes_;
}

Status NvmeTier::OpenRegionLocked() {
  for (size_t i = 0; i < regions_.size(); ++i) {
    Region& r = regions_[i];
    if (r.state != State::kFree) continue;
    // A new life for the region: persist the generation before any record of it reaches the disk, so
    // no index entry of its previous life can ever match what is written now.
    const uint64_t next = r.generation + 1;
    KVTIER_RETURN_IF_ERROR(meta_->PutRegionGeneration(static_cast<uint32_t>(i), next));
    r.generation = next;
    r.state = State::kOpen;
    r.fill = 0;
    r.live_bytes = 0;
    r.last_hit = ++clock_;
    open_ = static_cast<int64_t>(i);
    return Status::Ok();
  }
  return ResourceExhausted("nvme tier: no free region");
}

Result<Placement> NvmeTier::Allocate(uint64_t bytes) {
  bytes = disk::AlignUp(bytes, kDiskAlign);
  if (bytes > options_.region_bytes) {
    return ResourceExhausted("record of " + std::to_string(bytes) + " bytes exceeds the region size " +
                             std::to_string(options_.region_bytes));
  }
  std::lock_guard lock(mu_);
  if (open_ >= 0 && regions_[open_].fill + bytes > options_.region_bytes) {
    Region& r = regions_[open_];
    r.state = State::kSealed;
    r.sealed_seq = ++clock_;
    open_ = -1;
  }
  if (open_ < 0) KVTIER_RETURN_IF_ERROR(OpenRegionLocked());
  Region& r = regions_[open_];
  Placement p{static_cast<uint64_t>(open_) * options_.region_bytes + r.fill, bytes, r.generation};
  r.fill += bytes;
  r.live_bytes += bytes;
  ++r.writers;
  live_bytes_ += bytes;
  return p;
}

void NvmeTier::FinishWrite(const Placement& placement) {
  std::lock_guard lock(mu_);
  Region& r = regions_[RegionOf(placement)];
  if (r.writers > 0) --r.writers;
}

void NvmeTier::Free(const Placement& placement) {
  std::lock_guard lock(mu_);
  Region& r = regions_[RegionOf(placement)];
  if (r.generation != placement.generation || r.state == State::kFree) return;  // reset meanwhile
  r.live_bytes -= std::min(r.live_bytes, placement.length);
  live_bytes_ -= std::min(live_bytes_, placement.length);
}

bool NvmeTier::Adopt(const Placement& placement) {
  const uint32_t index = RegionOf(placement);
  if (index >= regions_.size() || placement.offset + placement.length > (index + 1) * options_.region_bytes) {
    return false;
  }
  std::lock_guard lock(mu_);
  Region& r = regions_[index];
  if (r.generation != placement.generation) return false;
  // Regions holding data at start are sealed: new records always go to a fresh region.
  if (r.state == State::kFree) {
    r.state = State::kSealed;
    r.sealed_seq = ++clock_;
  }
  r.fill = std::max(r.fill, placement.offset + placement.length - uint64_t{index} * options_.region_bytes);
  r.live_bytes += placement.length;
  live_bytes_ += placement.length;
  return true;
}

Status NvmeTier::Write(const Placement& placement, uint64_t offset, std::span<const std::byte> data) {
  if (offset + data.size() > placement.length) return InvalidArgument("write past the end of an nvme placement");
  return file_->Write(placement.offset + offset, data);
}

Status NvmeTier::Read(const Placement& placement, uint64_t offset, std::span<std::byte> out) {
  if (offset + out.size() > placement.length) return InvalidArgument("read past the end of an nvme placement");
  return file_->Read(placement.offset + offset, out);
}

Status NvmeTier::WriteRecords(std::span<RecordWrite> records) {
  if (records.empty()) return Status::Ok();
  std::span<std::byte> headers = HeaderScratch(records.size());
  std::memset(headers.data(), 0, headers.size());
  std::vector<DiskOp> ops;
  ops.reserve(records.size() * 2);
  for (size_t i = 0; i < records.size(); ++i) {
    RecordWrite& w = records[i];
    disk::SealHeader(&w.header);
    std::byte* block = headers.data() + i * kDiskAlign;
    std::memcpy(block, &w.header, sizeof(w.header));
    ops.push_back({DiskOp::kWrite, w.placement.offset, block, kDiskAlign});
    ops.push_back({DiskOp::kWrite, w.placement.offset + kDiskAlign, const_cast<std::byte*>(w.body.data()),
                   w.body.size()});
  }
  return file_->Submit(ops);
}

Status NvmeTier::ReadRecord(const Placement& placement, disk::RecordHeader* header, std::span<std::byte> body) {
  if (kDiskAlign + body.size() > placement.length) return InvalidArgument("record body larger than its placement");
  std::span<std::byte> block = HeaderScratch(1);
  const DiskOp ops[2] = {{DiskOp::kRead, placement.offset, block.data(), kDiskAlign},
                         {DiskOp::kRead, placement.offset + kDiskAlign, body.data(), body.size()}};
  KVTIER_RETURN_IF_ERROR(file_->Submit(ops));
  std::memcpy(header, block.data(), sizeof(*header));
  return Status::Ok();
}

bool NvmeTier::BeginRead(const Placement& placement) {
  std::lock_guard lock(mu_);
  Region& r = regions_[RegionOf(placement)];
  if (r.generation != placement.generation || r.state == State::kFree) return false;
  ++r.readers;
  r.last_hit = ++clock_;
  return true;
}

void NvmeTier::EndRead(const Placement& placement) {
  std::lock_guard lock(mu_);
  --regions_[RegionOf(placement)].readers;
}

void NvmeTier::NoteHit(const Placement& placement) {
  std::lock_guard lock(mu_);
  Region& r = regions_[RegionOf(placement)];
  if (r.generation == placement.generation) r.last_hit = ++clock_;
}

std::optional<uint32_t> NvmeTier::PickVictim() {
  std::lock_guard lock(mu_);
  std::optional<uint32_t> best;
  uint64_t best_key = UINT64_MAX;
  for (size_t i = 0; i < regions_.size(); ++i) {
    const Region& r = regions_[i];
    if (r.state != State::kSealed || r.readers > 0 || r.writers > 0) continue;
    const uint64_t key = options_.reclaim == RegionReclaim::kFifo ? r.sealed_seq : r.last_hit;
    if (key < best_key) {
      best_key = key;
      best = static_cast<uint32_t>(i);
    }
  }
  return best;
}

Status NvmeTier::ResetRegion(uint32_t index) {
  std::lock_guard lock(mu_);
  Region& r = regions_[index];
  if (r.readers > 0) return FailedPrecondition("region is being read");
  // The bumped generation is persisted when the region is opened again; until then nothing is written
  // into it, and entries of the old generation were dropped by the caller.
  live_bytes_ -= std::min(live_bytes_, r.live_bytes);
  r.state = State::kFree;
  r.fill = 0;
  r.live_bytes = 0;
  if (open_ == static_cast<int64_t>(index)) open_ = -1;
  return Status::Ok();
}

NvmeTier::RegionCounts NvmeTier::CountRegions() const {
  std::lock_guard lock(mu_);
  RegionCounts c;
  for (const Region& r : regions_) {
    if (r.state == State::kFree) ++c.free;
    else if (r.state == State::kOpen) ++c.open;
    else ++c.sealed;
  }
  return c;
}

}  // namespace kvtier
