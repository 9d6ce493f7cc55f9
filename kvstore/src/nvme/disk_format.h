// On-disk record format of the NVMe tier. The prose spec, field by field, is DISK_FORMAT.md next to
// this file; change both together and bump kDiskFormatVersion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kvtier/api/types.h"
#include "kvtier/kvstore/block_file.h"

namespace kvtier::disk {

inline constexpr uint32_t kRecordMagic = 0x5254564b;  // "KVTR" little-endian
inline constexpr uint16_t kDiskFormatVersion = 1;
inline constexpr uint64_t kHeaderBlock = kDiskAlign;  // the header occupies one aligned block
inline constexpr uint64_t kTokensAlign = 64;          // the payload starts 64-byte aligned after token ids

struct RecordHeader {
  uint32_t magic;              // kRecordMagic
  uint16_t format_version;     // kDiskFormatVersion
  uint16_t header_bytes;       // sizeof(RecordHeader)
  uint64_t region_generation;  // generation of the region when the record was written
  uint32_t region;             // region index in the file
  uint32_t ns_id;              // namespace id (meta store)
  uint32_t fp_id;              // fingerprint id (meta store)
  uint32_t num_tokens;
  uint8_t key[16];             // chunk key, wire form
  uint64_t payload_bytes;
  uint64_t payload_checksum;   // XXH3-64 of the payload (the API checksum)
  uint64_t tokens_checksum;    // XXH3-64 of the token ids as stored
  uint32_t base_position;
  uint8_t codec;
  uint8_t flags;               // 0
  uint16_t reserved0;          // 0
  uint64_t sequence;           // write order within this file
  uint8_t reserved[32];        // 0
  uint64_t header_checksum;    // XXH3-64 of the 120 bytes above
};
static_assert(sizeof(RecordHeader) == 128, "RecordHeader layout is part of the on-disk format");
static_assert(offsetof(RecordHeader, header_checksum) == 120, "RecordHeader layout is part of the on-disk format");

inline uint64_t AlignUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

// Bytes of the body [token ids][pad to 64][payload], and of the whole record rounded to blocks.
inline uint64_t BodyBytes(uint32_t num_tokens, uint64_t payload_bytes) {
  return AlignUp(uint64_t{num_tokens} * 4, kTokensAlign) + payload_bytes;
}
inline uint64_t RecordBytes(uint32_t num_tokens, uint64_t payload_bytes) {
  return kHeaderBlock + AlignUp(BodyBytes(num_tokens, payload_bytes), kDiskAlign);
}

uint64_t HeaderChecksum(const RecordHeader& h);
void SealHeader(RecordHeader* h);  // fills magic, version, size, checksum

// Checks a header read back against what the index expects. DATA_LOSS naming the first mismatch.
Status VerifyHeader(const RecordHeader& h, uint32_t region, uint64_t generation, uint32_t ns_id,
                    const ChunkKey& key);

}  // namespace kvtier::disk
