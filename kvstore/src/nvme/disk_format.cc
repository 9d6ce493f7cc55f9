#include "disk_format.h"

#include <cstring>

namespace kvtier::disk {

uint64_t HeaderChecksum(const RecordHeader& h) {
  return Checksum64({reinterpret_cast<const std::byte*>(&h), offsetof(RecordHeader, header_checksum)});
}

void SealHeader(RecordHeader* h) {
  h->magic = kRecordMagic;
  h->format_version = kDiskFormatVersion;
  h->header_bytes = sizeof(RecordHeader);
  h->header_checksum = HeaderChecksum(*h);
}

Status VerifyHeader(const RecordHeader& h, uint32_t region, uint64_t generation, uint32_t ns_id,
                    const ChunkKey& key) {
  if (h.magic != kRecordMagic) return DataLoss("record header has a bad magic");
  if (h.header_checksum != HeaderChecksum(h)) return DataLoss("record header checksum mismatch");
  if (h.format_version != kDiskFormatVersion || h.header_bytes != sizeof(RecordHeader)) {
    return DataLoss("record header has unknown format version " + std::to_string(h.format_version));
  }
  const auto wire = key.ToBytes();
  if (h.region != region || h.region_generation != generation || h.ns_id != ns_id ||
      std::memcmp(h.key, wire.data(), wire.size()) != 0) {
    return DataLoss("record header names another chunk or region generation (stale data)");
  }
  return Status::Ok();
}

}  // namespace kvtier::disk
