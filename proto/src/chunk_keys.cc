#include "kvtier/api/chunk_keys.h"

#include <bit>
#include <string_view>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

namespace kvtier {
namespace {

static_assert(std::endian::native == std::endian::little, "token ids are hashed as little-endian u32");

constexpr std::string_view kPrefixTag = "kvtier.prefix.v1";
constexpr std::string_view kContentTag = "kvtier.content.v1";

void UpdateKey(XXH3_state_t* st, const ChunkKey& key) {
  const ChunkKey::Bytes b = key.ToBytes();
  XXH3_128bits_update(st, b.data(), b.size());
}

void UpdateTokens(XXH3_state_t* st, std::span<const uint32_t> tokens) {
  const uint32_t n = static_cast<uint32_t>(tokens.size());
  XXH3_128bits_update(st, &n, sizeof(n));
  XXH3_128bits_update(st, tokens.data(), tokens.size_bytes());
}

ChunkKey Finish(XXH3_state_t* st) {
  const XXH128_hash_t h = XXH3_128bits_digest(st);
  return ChunkKey{h.high64, h.low64};
}

}  // namespace

ChunkKey DerivePrefixKey(const ChunkKey& fp_digest, const ChunkKey& parent, std::span<const uint32_t> tokens) {
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, kPrefixTag.data(), kPrefixTag.size());
  UpdateKey(&st, fp_digest);
  UpdateKey(&st, parent);
  UpdateTokens(&st, tokens);
  return Finish(&st);
}

ChunkKey DeriveContentKey(const ChunkKey& fp_digest, std::span<const uint32_t> tokens) {
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, kContentTag.data(), kContentTag.size());
  UpdateKey(&st, fp_digest);
  UpdateTokens(&st, tokens);
  return Finish(&st);
}

}  // namespace kvtier
