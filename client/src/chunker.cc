#include "kvtier/client/chunker.h"

#include <algorithm>
#include <bit>

#define XXH_STATIC_LINKING_ONLY
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

Chunker::Chunker(const ModelFingerprint& fingerprint)
    : fingerprint_(fingerprint), digest_(fingerprint.Digest()) {}

ChunkKey Chunker::PrefixKey(const ChunkKey& parent, std::span<const uint32_t> chunk_tokens) const {
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, kPrefixTag.data(), kPrefixTag.size());
  UpdateKey(&st, digest_);
  UpdateKey(&st, parent);
  UpdateTokens(&st, chunk_tokens);
  return Finish(&st);
}

ChunkKey Chunker::ContentKey(std::span<const uint32_t> chunk_tokens) const {
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, kContentTag.data(), kContentTag.size());
  UpdateKey(&st, digest_);
  UpdateTokens(&st, chunk_tokens);
  return Finish(&st);
}

std::vector<ChunkSpan> Chunker::Split(std::span<const uint32_t> tokens, KeyMode mode, bool include_partial) const {
  const size_t size = fingerprint_.chunk_tokens == 0 ? tokens.size() : fingerprint_.chunk_tokens;
  std::vector<ChunkSpan> out;
  out.reserve(tokens.size() / std::max<size_t>(size, 1) + 1);
  ChunkKey parent{};
  for (size_t begin = 0; begin < tokens.size(); begin += size) {
    const size_t end = std::min(tokens.size(), begin + size);
    if (end - begin < size && !include_partial) break;
    const auto chunk = tokens.subspan(begin, end - begin);
    const ChunkKey key = mode == KeyMode::kPrefix ? PrefixKey(parent, chunk) : ContentKey(chunk);
    out.push_back({begin, end, key});
    parent = key;
  }
  return out;
}

}  // namespace kvtier
