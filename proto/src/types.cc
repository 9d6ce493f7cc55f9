#include "kvtier/api/types.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <new>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

namespace kvtier {
namespace {

static_assert(std::endian::native == std::endian::little,
              "kvtier hashes little-endian integers in place; big-endian hosts need byte swaps");

uint64_t LoadBe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void StoreBe64(uint64_t v, uint8_t* p) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

template <typename T>
void HashLe(XXH3_state_t* st, T v) {
  XXH3_128bits_update(st, &v, sizeof(v));
}

}  // namespace

ChunkKey::Bytes ChunkKey::ToBytes() const {
  Bytes out;
  StoreBe64(hi, out.data());
  StoreBe64(lo, out.data() + 8);
  return out;
}

Result<ChunkKey> ChunkKey::FromBytes(std::string_view bytes) {
  if (bytes.size() != kBytes) {
    return InvalidArgument("chunk key must be 16 bytes, got " + std::to_string(bytes.size()));
  }
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  return ChunkKey{LoadBe64(p), LoadBe64(p + 8)};
}

std::string ChunkKey::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  const Bytes b = ToBytes();
  std::string out(2 * kBytes, '0');
  for (size_t i = 0; i < kBytes; ++i) {
    out[2 * i] = kDigits[b[i] >> 4];
    out[2 * i + 1] = kDigits[b[i] & 0xf];
  }
  return out;
}

Result<ChunkKey> ChunkKey::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kBytes) {
    return InvalidArgument("hex chunk key must be 32 digits, got " + std::to_string(hex.size()));
  }
  Bytes b;
  for (size_t i = 0; i < kBytes; ++i) {
    const int h = HexValue(hex[2 * i]);
    const int l = HexValue(hex[2 * i + 1]);
    if (h < 0 || l < 0) return InvalidArgument("hex chunk key has a non-hex digit");
    b[i] = static_cast<uint8_t>(h << 4 | l);
  }
  return FromBytes(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

size_t DTypeBytes(DType dtype) {
  switch (dtype) {
    case DType::kFp16: return 2;
    case DType::kBf16: return 2;
    case DType::kFp32: return 4;
    default: return 0;
  }
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFp16: return "fp16";
    case DType::kBf16: return "bf16";
    case DType::kFp32: return "fp32";
    default: return "unspecified";
  }
}

Status ModelFingerprint::Validate() const {
  // Bounds keep KvBytesPerToken far from overflow and reject nonsense early.
  if (model_id.empty()) return InvalidArgument("fingerprint.model_id is empty");
  if (model_id.size() > 256) return InvalidArgument("fingerprint.model_id is longer than 256 bytes");
  if (num_layers == 0 || num_layers > 1024) return InvalidArgument("fingerprint.num_layers must be in [1, 1024]");
  if (num_kv_heads == 0 || num_kv_heads > 1024) {
    return InvalidArgument("fingerprint.num_kv_heads must be in [1, 1024]");
  }
  if (head_dim == 0 || head_dim > 4096) return InvalidArgument("fingerprint.head_dim must be in [1, 4096]");
  if (DTypeBytes(dtype) == 0) {
    return InvalidArgument("fingerprint.dtype " + std::to_string(static_cast<int>(dtype)) +
                           " is not one of fp16, bf16, fp32");
  }
  if (rope_style != RopeStyle::kNone && rope_style != RopeStyle::kNeox && rope_style != RopeStyle::kGptj) {
    return InvalidArgument("fingerprint.rope_style is not one of none, neox, gptj");
  }
  if (rope_style != RopeStyle::kNone) {
    if (!(rope_theta > 0.0) || !std::isfinite(rope_theta)) {
      return InvalidArgument("fingerprint.rope_theta must be a positive finite number when RoPE is used");
    }
    if (rotary_dim == 0 || rotary_dim > head_dim || rotary_dim % 2 != 0) {
      return InvalidArgument("fingerprint.rotary_dim must be even and in [2, head_dim] when RoPE is used");
    }
  }
  if (chunk_tokens == 0 || chunk_tokens > 65536) {
    return InvalidArgument("fingerprint.chunk_tokens must be in [1, 65536]");
  }
  return Status::Ok();
}

uint64_t ModelFingerprint::KvBytesPerToken() const {
  return uint64_t{num_layers} * 2 * num_kv_heads * head_dim * DTypeBytes(dtype);
}

ChunkKey ModelFingerprint::Digest() const {
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  static constexpr std::string_view kTag = "kvtier.fp.v1";
  XXH3_128bits_update(&st, kTag.data(), kTag.size());
  HashLe<uint32_t>(&st, static_cast<uint32_t>(model_id.size()));
  XXH3_128bits_update(&st, model_id.data(), model_id.size());
  HashLe<uint32_t>(&st, num_layers);
  HashLe<uint32_t>(&st, num_kv_heads);
  HashLe<uint32_t>(&st, head_dim);
  HashLe<uint8_t>(&st, static_cast<uint8_t>(dtype));
  HashLe<uint64_t>(&st, std::bit_cast<uint64_t>(rope_theta));
  HashLe<uint8_t>(&st, static_cast<uint8_t>(rope_style));
  HashLe<uint32_t>(&st, rotary_dim);
  HashLe<uint8_t>(&st, keys_post_rope ? 1 : 0);
  HashLe<uint32_t>(&st, chunk_tokens);
  const XXH128_hash_t h = XXH3_128bits_digest(&st);
  return ChunkKey{h.high64, h.low64};
}

std::string ModelFingerprint::ShortString() const {
  return model_id + " L" + std::to_string(num_layers) + " H" + std::to_string(num_kv_heads) + " D" +
         std::to_string(head_dim) + " " + std::string(DTypeName(dtype)) + " C" + std::to_string(chunk_tokens);
}

uint64_t Checksum64(std::span<const std::byte> bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

struct ChecksumStream::State : XXH3_state_t {};
static_assert(sizeof(XXH3_state_t) <= 640, "ChecksumStream storage too small for XXH3_state_t");
static_assert(alignof(XXH3_state_t) <= 64, "ChecksumStream storage under-aligned for XXH3_state_t");

ChecksumStream::ChecksumStream() {
  new (storage_.data()) State();
  Reset();
}
ChecksumStream::ChecksumStream(const ChecksumStream& other) {
  new (storage_.data()) State();
  XXH3_copyState(state(), other.state());
}
ChecksumStream& ChecksumStream::operator=(const ChecksumStream& other) {
  if (this != &other) XXH3_copyState(state(), other.state());
  return *this;
}
ChecksumStream::~ChecksumStream() { state()->~State(); }
ChecksumStream::State* ChecksumStream::state() { return std::launder(reinterpret_cast<State*>(storage_.data())); }
const ChecksumStream::State* ChecksumStream::state() const {
  return std::launder(reinterpret_cast<const State*>(storage_.data()));
}
void ChecksumStream::Reset() { XXH3_64bits_reset(state()); }
void ChecksumStream::Update(std::span<const std::byte> bytes) { XXH3_64bits_update(state(), bytes.data(), bytes.size()); }
uint64_t ChecksumStream::Digest() const { return XXH3_64bits_digest(state()); }

}  // namespace kvtier
