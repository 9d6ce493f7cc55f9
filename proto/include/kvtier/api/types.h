// The data model shared by the server, the client and the codecs (DESIGN §2): chunk keys, the model
// fingerprint that says what shape a chunk's KV has, and checksums.
//
// All types here are small values without synchronization; share them across threads as const.
// Hashing is specified byte for byte in docs/keys.md so clients in other languages reproduce it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "kvtier/api/status.h"

namespace kvtier {

// A 128-bit chunk key. Its wire form is 16 bytes, `hi` first, each half big-endian; its text form
// is those bytes as 32 lowercase hex digits.
struct ChunkKey {
  uint64_t hi = 0;
  uint64_t lo = 0;

  static constexpr size_t kBytes = 16;
  using Bytes = std::array<uint8_t, kBytes>;

  Bytes ToBytes() const;
  static Result<ChunkKey> FromBytes(std::string_view bytes);  // INVALID_ARGUMENT unless 16 bytes
  std::string ToHex() const;
  static Result<ChunkKey> FromHex(std::string_view hex);      // INVALID_ARGUMENT unless 32 hex digits

  friend bool operator==(const ChunkKey&, const ChunkKey&) = default;
};

// For unordered containers; keys are hashes already, so folding the halves is enough.
struct ChunkKeyHasher {
  size_t operator()(const ChunkKey& k) const { return static_cast<size_t>(k.hi ^ (k.lo * 0x9e3779b97f4a7c15ull)); }
};

// Values equal the proto enum kvtier.v1.DType.
enum class DType : uint8_t { kUnspecified = 0, kFp16 = 1, kBf16 = 2, kFp32 = 3 };
// Values equal the proto enum kvtier.v1.RopeStyle.
enum class RopeStyle : uint8_t { kNone = 0, kNeox = 1, kGptj = 2 };

size_t DTypeBytes(DType dtype);        // 0 for kUnspecified or unknown values
std::string_view DTypeName(DType dtype);

// What a chunk's KV is: chunks of different fingerprints never mix (DESIGN §2).
struct ModelFingerprint {
  std::string model_id;
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  DType dtype = DType::kUnspecified;
  double rope_theta = 0.0;
  RopeStyle rope_style = RopeStyle::kNone;
  uint32_t rotary_dim = 0;         // 0 when rope_style is kNone
  bool keys_post_rope = false;     // true: stored K already has RoPE applied at its position
  uint32_t chunk_tokens = 0;       // tokens per full chunk

  // INVALID_ARGUMENT naming the first bad field.
  Status Validate() const;
  // Bytes of K and V for one token across all layers: layers * 2 * kv_heads * head_dim * dtype size.
  uint64_t KvBytesPerToken() const;
  // 16-byte digest of the canonical encoding (docs/keys.md); keys are derived from it.
  ChunkKey Digest() const;
  // "llama-7b L32 H8 D128 fp16 C256"
  std::string ShortString() const;

  friend bool operator==(const ModelFingerprint&, const ModelFingerprint&) = default;
};

// Chunk payload checksum: XXH3-64 (seed 0) of the payload bytes.
uint64_t Checksum64(std::span<const std::byte> bytes);

// Incremental form of Checksum64 for data that arrives in frames. Not thread-safe.
class ChecksumStream {
 public:
  ChecksumStream();
  ~ChecksumStream();
  // The state is plain bytes (XXH3_copyState is a memcpy), so copying is cheap and safe.
  ChecksumStream(const ChecksumStream& other);
  ChecksumStream& operator=(const ChecksumStream& other);

  void Reset();
  void Update(std::span<const std::byte> bytes);
  uint64_t Digest() const;

 private:
  struct State;
  alignas(64) std::array<std::byte, 640> storage_;  // XXH3_state_t lives here; no heap on the hot path
  State* state();
  const State* state() const;
};

inline std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace kvtier
