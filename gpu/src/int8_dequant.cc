#include "kvtier/gpu/int8_dequant.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "checks.h"
#include "data_path_math.h"
#include "kvtier/codec/codec.h"

namespace kvtier::gpu {
namespace {

// Container offsets the codec's public Inspect does not return (codec/FORMAT.md, header and stream table).
constexpr size_t kHeaderBytes = 64;
constexpr size_t kCodecParamAt = 32;
constexpr size_t kTableEntryBytes = 16;

uint64_t LoadU64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// The codec's rendering of checksums in its messages.
std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

uint64_t Int8StreamBytes(const ChunkShape& s) {
  const uint64_t row = uint64_t{s.num_kv_heads} * s.head_dim;
  return 2 * uint64_t{s.num_tokens} * 4 + 2 * uint64_t{s.num_tokens} * row;
}

uint64_t Int8OutputBytes(const ChunkShape& s, DType out_dtype) {
  return uint64_t{s.num_layers} * 2 * s.num_tokens * s.num_kv_heads * s.head_dim * DTypeBytes(out_dtype);
}

Result<Int8Payload> ParseInt8Container(std::span<const std::byte> encoded) {
  Result<codec::ContainerInfo> info = codec::Inspect(encoded);  // codec FORMAT.md checks 1-5
  if (!info.ok()) return info.status();
  if (info->codec != codec::CodecId::kInt8) {
    return InvalidArgument("container holds codec " + std::string(codec::CodecName(info->codec)) + ", not int8");
  }
  const codec::KvShape& k = info->shape;
  Int8Payload payload{ChunkShape{k.num_layers, k.num_tokens, k.num_kv_heads, k.head_dim, k.dtype}, {}};
  uint32_t codec_param;
  std::memcpy(&codec_param, encoded.data() + kCodecParamAt, 4);
  // The codec's own checks (codec/src/int8.cc), with its messages.
  if (codec_param != 0) {
    return InvalidArgument("int8 container has codec_param " + std::to_string(codec_param) + ", must be 0");
  }
  if (info->num_streams != k.num_layers) {
    return InvalidArgument("int8 container has " + std::to_string(info->num_streams) +
                           " streams, expected one per layer (" + std::to_string(k.num_layers) + ")");
  }
  const uint64_t stream_bytes = Int8StreamBytes(payload.shape);
  const size_t body_at = kHeaderBytes + kTableEntryBytes * size_t{info->num_streams};
  for (uint32_t l = 0; l < k.num_layers; ++l) {
    const std::byte* entry = encoded.data() + kHeaderBytes + kTableEntryBytes * l;
    const uint64_t length = LoadU64(entry);
    if (length != stream_bytes) {
      return InvalidArgument("int8 stream " + std::to_string(l) + " has " + std::to_string(length) +
                             " bytes, expected " + std::to_string(stream_bytes));
    }
    const uint64_t want = LoadU64(entry + 8);
    const uint64_t got = Checksum64(encoded.subspan(body_at + l * stream_bytes, stream_bytes));
    if (got != want) {
      return DataLoss("container stream " + std::to_string(l) + " checksum mismatch: stored " + Hex(want) +
                      ", computed " + Hex(got));
    }
  }
  payload.body = encoded.subspan(body_at, k.num_layers * stream_bytes);
  KVTIER_RETURN_IF_ERROR(detail::CheckInt8Scales(payload));
  return payload;
}

Status DequantizeInt8Cpu(const Int8Payload& payload, DType out_dtype, std::span<std::byte> out) {
  KVTIER_RETURN_IF_ERROR(detail::CheckInt8Call(payload, out_dtype, out.data(), out.size()));
  KVTIER_RETURN_IF_ERROR(detail::CheckInt8Scales(payload));
  const ChunkShape& s = payload.shape;
  const uint64_t row = uint64_t{s.num_kv_heads} * s.head_dim;
  const uint64_t stream = Int8StreamBytes(s);
  const uint8_t type = detail::ElementTypeOf(out_dtype);
  const uint64_t out_row_bytes = row * DTypeBytes(out_dtype);
  const auto* body = reinterpret_cast<const unsigned char*>(payload.body.data());
  auto* dst = reinterpret_cast<unsigned char*>(out.data());
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    const unsigned char* layer = body + l * stream;
    for (uint64_t r = 0; r < 2 * uint64_t{s.num_tokens}; ++r, dst += out_row_bytes) {  // r = kv * T + token
      const float step = detail::Int8Step(detail::LoadUnalignedFloat(layer + 4 * r));
      const auto* codes = reinterpret_cast<const int8_t*>(layer + 8 * uint64_t{s.num_tokens} + r * row);
      for (uint64_t i = 0; i < row; ++i) {
        detail::StoreElement(dst, static_cast<uint32_t>(i), type, detail::Int8Value(codes[i], step));
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu
