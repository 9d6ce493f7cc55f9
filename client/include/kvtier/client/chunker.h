// Chunker: turns a token sequence into 128-bit chunk keys (DESIGN §2), deterministic across
// processes, machines and languages. The exact bytes hashed are specified in docs/keys.md and pinned
// by test vectors in tests/unit/chunker_test.cc.
//
//   prefix mode:  key_i = XXH3-128("kvtier.prefix.v1" | fp_digest | key_{i-1} | u32le n | n x u32le token)
//                 (key_{-1} is 16 zero bytes), so a hit on chunk i implies the whole prefix matched;
//   content mode: key   = XXH3-128("kvtier.content.v1" | fp_digest | u32le n | n x u32le token),
//                 position-independent, for RAG chunks and CacheBlend reuse.
//
// Immutable after construction; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvtier/api/types.h"

namespace kvtier {

enum class KeyMode { kPrefix, kContent };

struct ChunkSpan {
  size_t begin = 0;  // first token of the chunk in the sequence
  size_t end = 0;    // one past its last token
  ChunkKey key;
};

class Chunker {
 public:
  explicit Chunker(const ModelFingerprint& fingerprint);

  // Cuts `tokens` into chunks of fingerprint.chunk_tokens and keys each one. A trailing partial chunk
  // is included only when `include_partial` (engines usually cache full chunks only).
  std::vector<ChunkSpan> Split(std::span<const uint32_t> tokens, KeyMode mode, bool include_partial = false) const;

  // `parent` is the key of the previous chunk, or ChunkKey{} for the first one.
  ChunkKey PrefixKey(const ChunkKey& parent, std::span<const uint32_t> chunk_tokens) const;
  ChunkKey ContentKey(std::span<const uint32_t> chunk_tokens) const;

  const ModelFingerprint& fingerprint() const { return fingerprint_; }
  const ChunkKey& fingerprint_digest() const { return digest_; }

 private:
  ModelFingerprint fingerprint_;
  ChunkKey digest_;
};

}  // namespace kvtier
