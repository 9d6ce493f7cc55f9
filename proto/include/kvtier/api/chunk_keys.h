// Chunk key derivation (docs/keys.md): the pure hash functions behind client::Chunker, here so the server
// can check a variant's content key against its token ids without the client library.
//
// Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>

#include "kvtier/api/types.h"

namespace kvtier {

// XXH3-128("kvtier.prefix.v1" || fp_digest || parent || u32 n || n x u32 token), little-endian.
ChunkKey DerivePrefixKey(const ChunkKey& fp_digest, const ChunkKey& parent, std::span<const uint32_t> tokens);
// XXH3-128("kvtier.content.v1" || fp_digest || u32 n || n x u32 token), little-endian.
ChunkKey DeriveContentKey(const ChunkKey& fp_digest, std::span<const uint32_t> tokens);

}  // namespace kvtier
