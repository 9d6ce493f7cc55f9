// kvtier codec: turns one chunk's KV tensor into a self-describing encoded container and back.
//
// Input is a chunk in the canonical layout [layer][K|V][token][kv_head][head_dim] (DESIGN §2) of
// fp16, bf16 or fp32 values. Encode writes a container (codec/FORMAT.md) into a caller-owned byte
// vector whose capacity is reused across calls; Decode writes the tensor back into a caller buffer of
// exactly shape.RawBytes() bytes, in the container's dtype. Lossless profiles round-trip bit-exactly;
// lossy ones within the error bound their section of FORMAT.md states.
//
// Decoders treat the encoded bytes as hostile: every length, count and index is checked, and a bad
// container is a Status (INVALID_ARGUMENT for malformed or unsupported input, DATA_LOSS for a checksum
// mismatch, NOT_FOUND for a shared profile the resolver does not know), never a crash or a read past
// the input.
//
// Thread safety: all functions are thread-safe and keep no global state. Parallel work runs on the
// Executor the caller passes (none: the calling thread does everything).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/codec/executor.h"

namespace kvtier::codec {

class ModelProfile;

// Values equal the proto enum kvtier.v1.Codec, so the service converts by cast.
enum class CodecId : uint8_t {
  kRaw = 1,       // canonical layout as is
  kLossless = 2,  // bytes split into planes (byte-shuffle), then zstd; bit-exact
  kInt8 = 3,      // uniform 8-bit per (layer, K|V, token) with an fp32 absmax scale
  kCacheGen = 4,  // quantization with per-layer bin counts + range coding (CACHEGEN.md)
  kKivi2 = 5,     // 2-bit: keys per channel over 32-token groups, values per token
  kMixed = 6,     // important tokens at 8 bits, the rest at 2..4 bits
};
inline constexpr CodecId kAllCodecs[] = {CodecId::kRaw,      CodecId::kLossless, CodecId::kInt8,
                                          CodecId::kCacheGen, CodecId::kKivi2,    CodecId::kMixed};

std::string_view CodecName(CodecId codec);                 // "raw", "lossless", ...; "unknown" otherwise
Result<CodecId> ParseCodecName(std::string_view name);     // INVALID_ARGUMENT listing the valid names
bool IsLossless(CodecId codec);                            // raw and lossless

// Shape of one chunk's KV tensor.
struct KvShape {
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t num_tokens = 0;
  DType dtype = DType::kUnspecified;

  uint64_t ValuesPerToken() const { return uint64_t{num_layers} * 2 * num_kv_heads * head_dim; }
  uint64_t NumValues() const { return ValuesPerToken() * num_tokens; }
  uint64_t RawBytes() const { return NumValues() * DTypeBytes(dtype); }
  // INVALID_ARGUMENT naming the first bad field: every dimension >= 1 and <= its limit
  // (layers, heads 1024; head_dim 4096; tokens 65536), dtype fp16/bf16/fp32.
  Status Validate() const;

  friend bool operator==(const KvShape&, const KvShape&) = default;
};

// A read-only view of one chunk. `data` has exactly shape.RawBytes() bytes.
struct KvView {
  KvShape shape;
  std::span<const std::byte> data;
  // Optional, one score per token (higher = more important); used by kMixed. Empty: the codec
  // derives importance from the KV itself (key norms, FORMAT.md).
  std::span<const float> importance;
};

// Quality levels of kCacheGen: more bins per layer at higher levels.
inline constexpr int kCacheGenMinLevel = 1;   // smallest
inline constexpr int kCacheGenMaxLevel = 3;   // best quality
inline constexpr int kCacheGenDefaultLevel = 2;

struct EncodeOptions {
  CodecId codec = CodecId::kRaw;
  // kCacheGen: quality level kCacheGenMinLevel..kCacheGenMaxLevel.
  int level = kCacheGenDefaultLevel;
  // kCacheGen: anchor-delta grouping (groups of 10 tokens, deltas against the group's first token).
  // The default is the setting the evaluation measured better (bench/RESULTS.md).
  bool anchor_delta = false;
  // kCacheGen: shared frequency tables (the chunk then references profile->id()); null: the
  // tables travel inside the chunk. The profile's shape must match the chunk's.
  const ModelProfile* profile = nullptr;
  // kCacheGen: tokens per independently decodable stream (1..256); smaller = more parallel decode.
  uint32_t max_tokens_per_stream = 256;
  // kLossless: zstd level (1..19); 3 is zstd's default trade-off.
  int zstd_level = 3;
  // kMixed: fraction of tokens kept at 8 bits (0..1), and the bits of the rest (2, 3 or 4). The rest
  // is quantized per token row, where a few outlier key channels set the range: at 2 bits that loses
  // most of the other channels (bench/RESULTS.md), so the default is 4.
  float mixed_top_fraction = 0.2f;
  int mixed_low_bits = 4;
  // Runs independent streams in parallel; null = the calling thread.
  Executor* executor = nullptr;
};

// Finds a shared profile by the id a chunk references; null when unknown.
using ProfileResolver = std::function<const ModelProfile*(uint64_t profile_id)>;

struct DecodeOptions {
  ProfileResolver profiles;      // needed for chunks that reference a shared profile
  Executor* executor = nullptr;  // decodes independent streams in parallel; null = calling thread
};

// What a container's header says, after its checksums were verified.
struct ContainerInfo {
  CodecId codec = CodecId::kRaw;
  KvShape shape;
  int level = 0;                 // kCacheGen level, 0 for the others
  bool anchor_delta = false;
  uint64_t profile_id = 0;       // 0: no shared profile referenced
  uint32_t num_streams = 0;
  uint64_t encoded_bytes = 0;    // the whole container
};

// Reads and verifies the header and stream table only (cheap; the server calls it on every put of an
// encoded chunk). INVALID_ARGUMENT / DATA_LOSS as for Decode.
Result<ContainerInfo> Inspect(std::span<const std::byte> encoded);

// Encodes `kv` into `out` (cleared first; its capacity is reused). INVALID_ARGUMENT for a bad shape,
// a data size that does not match it, an option out of range, or a profile of another shape.
Status Encode(const KvView& kv, const EncodeOptions& options, std::vector<std::byte>& out);

// Decodes into `out`, which must be exactly Inspect(encoded)->shape.RawBytes() bytes.
Status Decode(std::span<const std::byte> encoded, std::span<std::byte> out, const DecodeOptions& options);

// Upper bound of the encoded size of any profile for `shape`, for callers that size buffers up front.
uint64_t MaxEncodedBytes(const KvShape& shape);

}  // namespace kvtier::codec
