// The container every codec writes (codec/FORMAT.md): a 64-byte header, a table with one entry per
// stream, then the streams back to back. A codec turns a chunk into independent streams (so they can
// be encoded and decoded in parallel); this file owns everything around them: layout, limits and
// checksums. Plain functions over caller buffers; thread-safe.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/codec/codec.h"

namespace kvtier::codec::internal {

static_assert(std::endian::native == std::endian::little, "the container is little-endian on the wire");

inline constexpr uint32_t kContainerMagic = 0x4354564b;  // "KVTC" in file order
inline constexpr uint16_t kContainerVersion = 1;
inline constexpr uint32_t kMaxStreams = 1u << 20;

// Header flag bits.
inline constexpr uint8_t kFlagAnchorDelta = 1u << 0;   // cachegen: anchor-delta grouping
inline constexpr uint8_t kFlagInlineTables = 1u << 1;  // cachegen: frequency tables inside the chunk

struct ContainerHeader {
  uint32_t magic;            // kContainerMagic
  uint16_t version;          // kContainerVersion
  uint16_t header_bytes;     // sizeof(ContainerHeader); lets a later version append fields
  uint8_t codec;             // CodecId
  uint8_t dtype;             // kvtier::DType of the decoded tensor
  uint8_t level;             // cachegen quality level, 0 for other codecs
  uint8_t flags;             // kFlag* bits; unknown bits are INVALID_ARGUMENT
  uint32_t num_layers;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t num_tokens;
  uint32_t num_streams;      // entries in the stream table, 1..kMaxStreams
  uint32_t codec_param;      // codec-specific (FORMAT.md), 0 when unused
  uint64_t profile_id;       // cachegen shared profile referenced, 0 = none
  uint64_t body_bytes;       // sum of the stream lengths
  uint32_t table_checksum;   // low 32 bits of XXH3-64 of the stream table
  uint32_t header_checksum;  // low 32 bits of XXH3-64 of the preceding 60 bytes
};
static_assert(sizeof(ContainerHeader) == 64, "container header is 64 bytes on the wire");

struct StreamEntry {
  uint64_t length;    // bytes of this stream
  uint64_t checksum;  // XXH3-64 (seed 0) of the stream's bytes
};
static_assert(sizeof(StreamEntry) == 16, "stream table entry is 16 bytes on the wire");

// Everything besides the streams that a codec decides at encode time.
struct ContainerParams {
  uint8_t level = 0;
  uint8_t flags = 0;
  uint32_t codec_param = 0;
  uint64_t profile_id = 0;
};

// What a codec's encoder produces: one buffer per stream, filled in parallel.
struct EncodedStreams {
  ContainerParams params;
  std::vector<std::vector<std::byte>> streams;
};

// A verified container: header fields plus views of each stream inside the caller's bytes.
// Stream checksums are verified lazily by StreamBytes so parallel decoders check their own streams.
struct ParsedContainer {
  ContainerInfo info;
  ContainerParams params;
  std::span<const StreamEntry> table;     // unaligned-safe copy lives in `entries`
  std::vector<StreamEntry> entries;
  std::vector<uint64_t> offsets;          // offset of stream i inside `body`
  std::span<const std::byte> body;
};

// Lays out header + table + streams into `out` (cleared first).
Status WriteContainer(CodecId codec, const KvShape& shape, const EncodedStreams& streams,
                      std::vector<std::byte>& out);

// Verifies magic, version, header and table checksums, known codec/dtype/flags, shape limits and
// that lengths add up to exactly the input size. Does not read the streams' bytes.
Result<ParsedContainer> ParseContainer(std::span<const std::byte> encoded);

// Recomputes every stream checksum, the table checksum and the header checksum of `container`, as far
// as its header and table parse. For tests and fuzzers that damage a container's body on purpose and
// want the damage to reach the codec's own parsing instead of stopping at a checksum.
void RecomputeChecksums(std::span<std::byte> container);

// Stream i's bytes after verifying its checksum (DATA_LOSS naming the stream when it does not match).
Result<std::span<const std::byte>> StreamBytes(const ParsedContainer& container, uint32_t index);

}  // namespace kvtier::codec::internal
