// The dispatcher: validates shapes and options, frames every codec's streams in the container, and
// routes a container to its codec's decoder. Each codec lives in its own file (codec_impl.h).
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "codec_impl.h"
#include "container.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"

namespace kvtier::codec {
namespace {

constexpr uint32_t kMaxLayers = 1024;
constexpr uint32_t kMaxKvHeads = 1024;
constexpr uint32_t kMaxHeadDim = 4096;
constexpr uint32_t kMaxTokens = 65536;

Status CheckDim(const char* name, uint32_t value, uint32_t limit) {
  if (value >= 1 && value <= limit) return Status::Ok();
  return InvalidArgument(std::string("shape ") + name + " " + std::to_string(value) + " is not in [1, " +
                         std::to_string(limit) + "]");
}

Status ValidateOptions(const EncodeOptions& o) {
  if (CodecName(o.codec) == "unknown") {
    return InvalidArgument("unknown codec id " + std::to_string(static_cast<int>(o.codec)));
  }
  if (o.zstd_level < 1 || o.zstd_level > 19) {
    return InvalidArgument("zstd_level " + std::to_string(o.zstd_level) + " is not in [1, 19]");
  }
  if (o.level < kCacheGenMinLevel || o.level > kCacheGenMaxLevel) {
    return InvalidArgument("cachegen level " + std::to_string(o.level) + " is not in [" +
                           std::to_string(kCacheGenMinLevel) + ", " + std::to_string(kCacheGenMaxLevel) + "]");
  }
  if (o.max_tokens_per_stream < 1 || o.max_tokens_per_stream > 256) {
    return InvalidArgument("max_tokens_per_stream " + std::to_string(o.max_tokens_per_stream) +
                           " is not in [1, 256]");
  }
  if (!(o.mixed_top_fraction >= 0.0f && o.mixed_top_fraction <= 1.0f)) {
    return InvalidArgument("mixed_top_fraction " + std::to_string(o.mixed_top_fraction) + " is not in [0, 1]");
  }
  if (o.mixed_low_bits < 2 || o.mixed_low_bits > 4) {
    return InvalidArgument("mixed_low_bits " + std::to_string(o.mixed_low_bits) + " is not 2, 3 or 4");
  }
  return Status::Ok();
}

Status ValidateView(const KvView& kv, const EncodeOptions& o) {
  KVTIER_RETURN_IF_ERROR(kv.shape.Validate());
  if (kv.data.size() != kv.shape.RawBytes()) {
    return InvalidArgument("KV data has " + std::to_string(kv.data.size()) + " bytes, the shape needs " +
                           std::to_string(kv.shape.RawBytes()));
  }
  if (!kv.importance.empty()) {
    if (kv.importance.size() != kv.shape.num_tokens) {
      return InvalidArgument("importance has " + std::to_string(kv.importance.size()) + " scores, the chunk has " +
                             std::to_string(kv.shape.num_tokens) + " tokens");
    }
    for (size_t t = 0; t < kv.importance.size(); ++t) {
      if (!std::isfinite(kv.importance[t])) {
        return InvalidArgument("importance of token " + std::to_string(t) + " is not finite");
      }
    }
  }
  if (o.codec == CodecId::kCacheGen && o.profile != nullptr) {
    const ModelProfile& p = *o.profile;
    if (p.num_layers() != kv.shape.num_layers || p.num_kv_heads() != kv.shape.num_kv_heads ||
        p.head_dim() != kv.shape.head_dim) {
      return InvalidArgument("profile shape L" + std::to_string(p.num_layers()) + " H" +
                             std::to_string(p.num_kv_heads()) + " D" + std::to_string(p.head_dim()) +
                             " does not match the chunk's L" + std::to_string(kv.shape.num_layers) + " H" +
                             std::to_string(kv.shape.num_kv_heads) + " D" + std::to_string(kv.shape.head_dim));
    }
  }
  return Status::Ok();
}

}  // namespace

std::string_view CodecName(CodecId codec) {
  switch (codec) {
    case CodecId::kRaw: return "raw";
    case CodecId::kLossless: return "lossless";
    case CodecId::kInt8: return "int8";
    case CodecId::kCacheGen: return "cachegen";
    case CodecId::kKivi2: return "kivi2";
    case CodecId::kMixed: return "mixed";
  }
  return "unknown";
}

Result<CodecId> ParseCodecName(std::string_view name) {
  std::string valid;
  for (CodecId c : kAllCodecs) {
    if (CodecName(c) == name) return c;
    valid += (valid.empty() ? "" : ", ") + std::string(CodecName(c));
  }
  return InvalidArgument("unknown codec \"" + std::string(name) + "\"; valid: " + valid);
}

bool IsLossless(CodecId codec) { return codec == CodecId::kRaw || codec == CodecId::kLossless; }

Status KvShape::Validate() const {
  KVTIER_RETURN_IF_ERROR(CheckDim("num_layers", num_layers, kMaxLayers));
  KVTIER_RETURN_IF_ERROR(CheckDim("num_kv_heads", num_kv_heads, kMaxKvHeads));
  KVTIER_RETURN_IF_ERROR(CheckDim("head_dim", head_dim, kMaxHeadDim));
  KVTIER_RETURN_IF_ERROR(CheckDim("num_tokens", num_tokens, kMaxTokens));
  if (dtype != DType::kFp16 && dtype != DType::kBf16 && dtype != DType::kFp32) {
    return InvalidArgument("shape dtype " + std::to_string(static_cast<int>(dtype)) + " is not fp16, bf16 or fp32");
  }
  return Status::Ok();
}

Result<ContainerInfo> Inspect(std::span<const std::byte> encoded) {
  auto parsed = internal::ParseContainer(encoded);
  if (!parsed.ok()) return parsed.status();
  return parsed->info;
}

Status Encode(const KvView& kv, const EncodeOptions& options, std::vector<std::byte>& out) {
  out.clear();
  KVTIER_RETURN_IF_ERROR(ValidateOptions(options));
  KVTIER_RETURN_IF_ERROR(ValidateView(kv, options));
  internal::EncodedStreams streams;
  switch (options.codec) {
    case CodecId::kRaw: KVTIER_RETURN_IF_ERROR(internal::EncodeRaw(kv, options, streams)); break;
    case CodecId::kLossless: KVTIER_RETURN_IF_ERROR(internal::EncodeLossless(kv, options, streams)); break;
    case CodecId::kInt8: KVTIER_RETURN_IF_ERROR(internal::EncodeInt8(kv, options, streams)); break;
    case CodecId::kCacheGen: KVTIER_RETURN_IF_ERROR(internal::EncodeCacheGen(kv, options, streams)); break;
    case CodecId::kKivi2: KVTIER_RETURN_IF_ERROR(internal::EncodeKivi2(kv, options, streams)); break;
    case CodecId::kMixed: KVTIER_RETURN_IF_ERROR(internal::EncodeMixed(kv, options, streams)); break;
  }
  return internal::WriteContainer(options.codec, kv.shape, streams, out);
}

Status Decode(std::span<const std::byte> encoded, std::span<std::byte> out, const DecodeOptions& options) {
  auto parsed = internal::ParseContainer(encoded);
  if (!parsed.ok()) return parsed.status();
  const internal::ParsedContainer& pc = *parsed;
  const uint64_t need = pc.info.shape.RawBytes();
  if (out.size() != need) {
    return InvalidArgument("output buffer has " + std::to_string(out.size()) + " bytes, the chunk decodes to " +
                           std::to_string(need));
  }
  switch (pc.info.codec) {
    case CodecId::kRaw: return internal::DecodeRaw(pc, out, options);
    case CodecId::kLossless: return internal::DecodeLossless(pc, out, options);
    case CodecId::kInt8: return internal::DecodeInt8(pc, out, options);
    case CodecId::kCacheGen: return internal::DecodeCacheGen(pc, out, options);
    case CodecId::kKivi2: return internal::DecodeKivi2(pc, out, options);
    case CodecId::kMixed: return internal::DecodeMixed(pc, out, options);
  }
  return InvalidArgument("unknown codec");  // ParseContainer already refused it
}

uint64_t MaxEncodedBytes(const KvShape& shape) {
  const uint64_t raw = shape.RawBytes();
  const uint64_t rows = uint64_t{shape.num_layers} * 2 * shape.num_tokens;
  const uint64_t channels = uint64_t{shape.num_layers} * 2 * shape.num_kv_heads * shape.head_dim;
  // Streams: at most one per (layer, K|V, token) row plus one, or one per ~1 MiB lossless slice.
  const uint64_t streams = std::max<uint64_t>(rows + 1, raw / (256 << 10) + 2);
  const uint64_t framing = sizeof(internal::ContainerHeader) + streams * sizeof(internal::StreamEntry);
  // zstd's worst case on the raw bytes; or codes of at most 24 bits per value (a range coder with a
  // shared table that fits the data badly) plus per-row, per-channel (frequency tables of up to 255
  // symbols, two kinds) and per-group parameters.
  const uint64_t zstd_worst = raw + raw / 128 + streams * 64;
  const uint64_t codes = std::max(raw, shape.NumValues() * 3);
  const uint64_t params = rows * 64 + channels * 272 + channels * 4 * ((shape.num_tokens + 31) / 32) +
                          rows * shape.num_kv_heads * 4;
  return framing + std::max(zstd_worst, codes + params) + 4096;
}

}  // namespace kvtier::codec
