#include "kvtier/client/chunker.h"

#include <algorithm>

#include "kvtier/api/chunk_keys.h"

namespace kvtier {

Chunker::Chunker(const ModelFingerprint& fingerprint)
    : fingerprint_(fingerprint), digest_(fingerprint.Digest()) {}

ChunkKey Chunker::PrefixKey(const ChunkKey& parent, std::span<const uint32_t> chunk_tokens) const {
  return DerivePrefixKey(digest_, parent, chunk_tokens);
}

ChunkKey Chunker::ContentKey(std::span<const uint32_t> chunk_tokens) const {
  return DeriveContentKey(digest_, chunk_tokens);
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
