#include "encoded_chunk.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "kvtier/v1/kvtier.pb.h"

namespace kvtier::internal {
namespace {

constexpr uint64_t kDeviceAlignment = 16;  // cachegen image and workspace (cachegen_decode.h)

uint64_t AlignUp(uint64_t v) { return (v + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment; }

std::string ShapeText(const gpu::ChunkShape& s) {
  return std::to_string(s.num_tokens) + " tokens, L" + std::to_string(s.num_layers) + " H" +
         std::to_string(s.num_kv_heads) + " D" + std::to_string(s.head_dim) + " " + std::string(DTypeName(s.dtype));
}

bool SameShape(const gpu::ChunkShape& a, const gpu::ChunkShape& b) {
  return a.num_layers == b.num_layers && a.num_tokens == b.num_tokens && a.num_kv_heads == b.num_kv_heads &&
         a.head_dim == b.head_dim && a.dtype == b.dtype;
}

// Offsets from the slot's start that make `within + at` 16-aligned in the staging.
uint64_t AlignedAfter(const EncodedSlot& slot, uint64_t within) { return AlignUp(slot.at + within) - slot.at; }

}  // namespace

bool LayOutEncodedChunk(EncodedChunk& e, const EncodedSlot& slot, uint64_t container_bytes) {
  uint64_t device_end = e.body.size();
  uint64_t host_end = slot.container_in_host ? container_bytes : 0;
  if (e.is_cachegen()) {
    e.image_at = AlignedAfter(slot, device_end);
    e.workspace_at = AlignedAfter(slot, e.image_at + e.image.size());
    device_end = e.workspace_at + gpu::CachegenWorkspaceBytes(e.cachegen);
    e.host_image_at = AlignedAfter(slot, host_end);
    e.host_errors_at = AlignedAfter(slot, e.host_image_at + e.image.size());
    host_end = e.host_errors_at + gpu::CachegenErrorBytes(e.cachegen);
  }
  return device_end <= slot.bytes && host_end <= slot.bytes;
}

bool EncodedChunk::is_cachegen() const { return codec == v1::CODEC_CACHEGEN; }

Status AboutChunk(const ChunkKey& key, const Status& status) {
  return Status(status.code(), "chunk " + key.ToHex() + ": " + status.message());
}

Result<std::optional<EncodedChunk>> ParseEncodedChunk(std::span<const std::byte> container, uint8_t codec,
                                                      const gpu::ChunkShape& expected,
                                                      const gpu::CachegenProfileResolver& profiles,
                                                      gpu::CachegenTableCache* table_cache, const ChunkKey& key) {
  EncodedChunk e;
  e.codec = codec;
  gpu::ChunkShape shape;
  if (codec == v1::CODEC_INT8) {
    auto payload = gpu::ParseInt8Container(container);
    if (!payload.ok()) return AboutChunk(key, payload.status());
    e.int8 = *payload;
    e.body = payload->body;
    shape = payload->shape;
  } else if (codec == v1::CODEC_CACHEGEN) {
    auto plan = gpu::ParseCachegenContainer(container, profiles, table_cache);
    if (!plan.ok()) return AboutChunk(key, plan.status());
    e.cachegen = std::move(*plan);
    e.body = e.cachegen.body;
    shape = e.cachegen.shape;
  } else {
    return std::optional<EncodedChunk>();  // lossless, kivi2, mixed: decoded on the host
  }
  if (!SameShape(shape, expected)) {
    return AboutChunk(key, DataLoss("the container holds " + ShapeText(shape) + ", the chunk should be " +
                                    ShapeText(expected)));
  }
  return std::optional<EncodedChunk>(std::move(e));
}

void ResidentTables::Attach(EncodedChunk& e) {
  if (!e.is_cachegen()) return;
  const gpu::CachegenPlan& plan = e.cachegen;
  if (plan.profile_id == 0 || !AttachTables(e)) {
    e.image = gpu::CachegenImage(plan);  // records and tables
    return;
  }
  // Only the records: CachegenImage's first CachegenTablesOffset bytes, without building the tables part.
  e.image.assign(gpu::CachegenTablesOffset(plan), std::byte{0});
  std::memcpy(e.image.data(), plan.streams.data(), plan.streams.size() * sizeof(gpu::CachegenStream));
}

bool ResidentTables::AttachTables(EncodedChunk& e) {
  const gpu::CachegenPlan& plan = e.cachegen;
  const std::span<const std::byte> tables = std::as_bytes(plan.Tables());
  auto found = std::find_if(sets_.begin(), sets_.end(), [&](const Set& s) {
    return s.profile_id == plan.profile_id && s.level == plan.level && s.anchor_delta == plan.anchor_delta;
  });
  if (found == sets_.end()) {
    if (sets_.size() >= kMaxSets) return false;
    auto device = upload_(tables);
    if (!device.ok()) return false;  // no room on the device, say: the tables travel with the chunk
    found = sets_.insert(sets_.end(), Set{plan.profile_id, plan.level, plan.anchor_delta, *device});
  }
  // The same profile, level and anchor-delta setting give the same tables (the profile level's, for every
  // slice): only their size can be checked cheaply.
  if (found->device.size() != tables.size()) return false;
  e.device_tables = found->device;
  return true;
}

}  // namespace kvtier::internal
