#include "container.h"

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

namespace kvtier::codec::internal {
namespace {

constexpr uint8_t kKnownFlags = kFlagAnchorDelta | kFlagInlineTables;
constexpr size_t kHeaderChecksummedBytes = offsetof(ContainerHeader, header_checksum);
static_assert(kHeaderChecksummedBytes == 60, "header checksum covers the preceding 60 bytes");

uint32_t Low32(uint64_t v) { return static_cast<uint32_t>(v); }

// The struct has 4 bytes of alignment padding after codec_param; on the wire they are reserved
// zeros, covered by the header checksum like every other byte before it.
constexpr size_t kReservedAt = offsetof(ContainerHeader, codec_param) + sizeof(uint32_t);
constexpr size_t kReservedBytes = offsetof(ContainerHeader, profile_id) - kReservedAt;
static_assert(kReservedAt == 36 && kReservedBytes == 4, "reserved bytes 36..39");

uint32_t HeaderChecksum(const std::byte* header) { return Low32(Checksum64({header, kHeaderChecksummedBytes})); }

bool ReservedBytesZero(const std::byte* header) {
  for (size_t i = 0; i < kReservedBytes; ++i) {
    if (header[kReservedAt + i] != std::byte{0}) return false;
  }
  return true;
}

bool KnownCodec(uint8_t c) { return c >= uint8_t(CodecId::kRaw) && c <= uint8_t(CodecId::kMixed); }
bool KnownDType(uint8_t d) { return d >= uint8_t(DType::kFp16) && d <= uint8_t(DType::kFp32); }

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Fields whose meaning depends on the codec: level, flags and profile_id are cachegen's only.
Status CheckCodecFields(const ContainerHeader& h) {
  if (h.flags & ~kKnownFlags) {
    return InvalidArgument("container flags 0x" + Hex(h.flags).substr(14) + " has unknown bits");
  }
  if (h.codec == uint8_t(CodecId::kCacheGen)) {
    if (h.level < kCacheGenMinLevel || h.level > kCacheGenMaxLevel) {
      return InvalidArgument("container cachegen level " + std::to_string(h.level) + " is not in [" +
                             std::to_string(kCacheGenMinLevel) + ", " + std::to_string(kCacheGenMaxLevel) + "]");
    }
    return Status::Ok();
  }
  if (h.level != 0 || h.flags != 0 || h.profile_id != 0) {
    return InvalidArgument("container of codec " + std::string(CodecName(CodecId(h.codec))) +
                           " has cachegen-only fields set (level " + std::to_string(h.level) + ", flags " +
                           std::to_string(h.flags) + ", profile_id " + std::to_string(h.profile_id) + ")");
  }
  return Status::Ok();
}

}  // namespace

Status WriteContainer(CodecId codec, const KvShape& shape, const EncodedStreams& streams,
                      std::vector<std::byte>& out) {
  out.clear();
  if (streams.streams.empty() || streams.streams.size() > kMaxStreams) {
    return Internal("codec produced " + std::to_string(streams.streams.size()) + " streams, must be 1.." +
                    std::to_string(kMaxStreams));
  }
  const uint32_t n = static_cast<uint32_t>(streams.streams.size());
  std::vector<StreamEntry> table(n);
  uint64_t body = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const auto& s = streams.streams[i];
    table[i].length = s.size();
    table[i].checksum = Checksum64(s);
    body += s.size();
  }
  ContainerHeader h{};
  h.magic = kContainerMagic;
  h.version = kContainerVersion;
  h.header_bytes = sizeof(ContainerHeader);
  h.codec = static_cast<uint8_t>(codec);
  h.dtype = static_cast<uint8_t>(shape.dtype);
  h.level = streams.params.level;
  h.flags = streams.params.flags;
  h.num_layers = shape.num_layers;
  h.num_kv_heads = shape.num_kv_heads;
  h.head_dim = shape.head_dim;
  h.num_tokens = shape.num_tokens;
  h.num_streams = n;
  h.codec_param = streams.params.codec_param;
  h.profile_id = streams.params.profile_id;
  h.body_bytes = body;
  h.table_checksum = Low32(Checksum64({reinterpret_cast<const std::byte*>(table.data()), n * sizeof(StreamEntry)}));
  h.header_checksum = 0;

  out.resize(sizeof(h) + n * sizeof(StreamEntry) + body);
  std::byte* p = out.data();
  std::memcpy(p, &h, sizeof(h));
  std::memset(p + kReservedAt, 0, kReservedBytes);
  const uint32_t header_checksum = HeaderChecksum(p);
  std::memcpy(p + offsetof(ContainerHeader, header_checksum), &header_checksum, sizeof(header_checksum));
  p += sizeof(h);
  std::memcpy(p, table.data(), n * sizeof(StreamEntry));
  p += n * sizeof(StreamEntry);
  for (const auto& s : streams.streams) {
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  return Status::Ok();
}

Result<ParsedContainer> ParseContainer(std::span<const std::byte> encoded) {
  if (encoded.size() < sizeof(ContainerHeader)) {
    return InvalidArgument("container of " + std::to_string(encoded.size()) + " bytes is shorter than its " +
                           std::to_string(sizeof(ContainerHeader)) + "-byte header");
  }
  ContainerHeader h;
  std::memcpy(&h, encoded.data(), sizeof(h));
  if (h.magic != kContainerMagic) return InvalidArgument("not a kvtier codec container (bad magic)");
  if (h.version != kContainerVersion) {
    return InvalidArgument("container format version " + std::to_string(h.version) + " is not supported (this is " +
                           std::to_string(kContainerVersion) + ")");
  }
  if (h.header_bytes != sizeof(ContainerHeader)) {
    return InvalidArgument("container header_bytes " + std::to_string(h.header_bytes) + " must be " +
                           std::to_string(sizeof(ContainerHeader)) + " in version 1");
  }
  if (const uint32_t want = HeaderChecksum(encoded.data()); want != h.header_checksum) {
    return DataLoss("container header checksum mismatch: stored " + Hex(h.header_checksum).substr(8) +
                    ", computed " + Hex(want).substr(8));
  }
  if (!ReservedBytesZero(encoded.data())) return InvalidArgument("container reserved bytes 36..39 are not zero");
  if (!KnownCodec(h.codec)) return InvalidArgument("container has unknown codec id " + std::to_string(h.codec));
  if (!KnownDType(h.dtype)) return InvalidArgument("container has unknown dtype " + std::to_string(h.dtype));
  KVTIER_RETURN_IF_ERROR(CheckCodecFields(h));
  ParsedContainer pc;
  pc.info.codec = static_cast<CodecId>(h.codec);
  pc.info.shape = KvShape{h.num_layers, h.num_kv_heads, h.head_dim, h.num_tokens, static_cast<DType>(h.dtype)};
  if (Status s = pc.info.shape.Validate(); !s.ok()) return InvalidArgument("container shape: " + s.message());
  if (h.num_streams == 0 || h.num_streams > kMaxStreams) {
    return InvalidArgument("container num_streams " + std::to_string(h.num_streams) + " is not in [1, " +
                           std::to_string(kMaxStreams) + "]");
  }
  const uint64_t table_bytes = uint64_t{h.num_streams} * sizeof(StreamEntry);
  const uint64_t prefix = sizeof(ContainerHeader) + table_bytes;
  if (encoded.size() < prefix) {
    return InvalidArgument("container of " + std::to_string(encoded.size()) + " bytes is truncated inside its " +
                           std::to_string(h.num_streams) + "-entry stream table");
  }
  const std::byte* table = encoded.data() + sizeof(ContainerHeader);
  if (const uint32_t want = Low32(Checksum64({table, table_bytes})); want != h.table_checksum) {
    return DataLoss("container stream table checksum mismatch: stored " + Hex(h.table_checksum).substr(8) +
                    ", computed " + Hex(want).substr(8));
  }
  // The table checksum matched, so a wrong body size means truncation or trailing bytes.
  if (h.body_bytes > encoded.size() - prefix || prefix + h.body_bytes != encoded.size()) {
    return InvalidArgument("container is " + std::to_string(encoded.size()) + " bytes, header says " +
                           std::to_string(prefix) + " + " + std::to_string(h.body_bytes) + " body bytes");
  }
  pc.entries.resize(h.num_streams);
  std::memcpy(pc.entries.data(), table, table_bytes);
  pc.offsets.resize(h.num_streams);
  uint64_t sum = 0;
  for (uint32_t i = 0; i < h.num_streams; ++i) {
    const uint64_t len = pc.entries[i].length;
    if (len > h.body_bytes - sum) {
      return InvalidArgument("container stream " + std::to_string(i) + " of " + std::to_string(len) +
                             " bytes runs past the body of " + std::to_string(h.body_bytes) + " bytes");
    }
    pc.offsets[i] = sum;
    sum += len;
  }
  if (sum != h.body_bytes) {
    return InvalidArgument("container stream lengths add up to " + std::to_string(sum) + " bytes, body_bytes is " +
                           std::to_string(h.body_bytes));
  }
  pc.table = pc.entries;
  pc.body = encoded.subspan(prefix);
  pc.params = ContainerParams{h.level, h.flags, h.codec_param, h.profile_id};
  pc.info.level = h.level;
  pc.info.anchor_delta = (h.flags & kFlagAnchorDelta) != 0;
  pc.info.profile_id = h.profile_id;
  pc.info.num_streams = h.num_streams;
  pc.info.encoded_bytes = encoded.size();
  return pc;
}

Result<std::span<const std::byte>> StreamBytes(const ParsedContainer& container, uint32_t index) {
  if (index >= container.entries.size()) {
    return InvalidArgument("stream " + std::to_string(index) + " requested, container has " +
                           std::to_string(container.entries.size()));
  }
  const StreamEntry& e = container.entries[index];
  if (container.offsets[index] > container.body.size() || e.length > container.body.size() - container.offsets[index]) {
    return InvalidArgument("stream " + std::to_string(index) + " lies outside the container body");
  }
  const auto bytes = container.body.subspan(container.offsets[index], e.length);
  if (const uint64_t got = Checksum64(bytes); got != e.checksum) {
    return DataLoss("container stream " + std::to_string(index) + " checksum mismatch: stored " + Hex(e.checksum) +
                    ", computed " + Hex(got));
  }
  return bytes;
}

void RecomputeChecksums(std::span<std::byte> c) {
  if (c.size() < sizeof(ContainerHeader)) return;
  ContainerHeader h;
  std::memcpy(&h, c.data(), sizeof(h));
  const uint64_t table = uint64_t{h.num_streams} * sizeof(StreamEntry);
  if (h.num_streams <= kMaxStreams && c.size() >= sizeof(h) + table) {
    uint64_t off = sizeof(h) + table;
    for (uint32_t i = 0; i < h.num_streams; ++i) {
      StreamEntry e;
      std::memcpy(&e, c.data() + sizeof(h) + sizeof(e) * i, sizeof(e));
      if (e.length > c.size() - off) break;
      e.checksum = Checksum64(c.subspan(off, e.length));
      std::memcpy(c.data() + sizeof(h) + sizeof(e) * i, &e, sizeof(e));
      off += e.length;
    }
    h.table_checksum = static_cast<uint32_t>(Checksum64(c.subspan(sizeof(h), table)));
  }
  h.header_checksum = 0;
  std::memcpy(c.data() + offsetof(ContainerHeader, table_checksum), &h.table_checksum, 4);
  const uint32_t header_checksum = static_cast<uint32_t>(Checksum64(c.first(offsetof(ContainerHeader, header_checksum))));
  std::memcpy(c.data() + offsetof(ContainerHeader, header_checksum), &header_checksum, 4);
}

}  // namespace kvtier::codec::internal
