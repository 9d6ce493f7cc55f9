// Reuse of chunks beyond prefixes (DESIGN §6): how a chunk's variants are keyed, and how well the context a
// variant was computed behind matches a new one.
//
// A content-mode chunk (docs/keys.md) computed behind different contexts has different KV; each such
// computation is a *variant*, stored under its own key derived from the content key and the ordered content
// keys of the chunks it was computed behind. The server picks, for a new context, the variant whose old
// context matches best (MatchContext); the client's Cache-Craft planner turns the same score into how many
// tokens to recompute. Both sides use these functions, so they agree.
//
// Stateless functions; thread-safe.
#pragma once

#include <span>

#include "kvtier/api/types.h"

namespace kvtier {

// XXH3-128("kvtier.variant.v1" || content_key || u32 m || m x context_key), keys as their 16 wire bytes,
// integers little-endian (docs/keys.md). A chunk computed alone has m = 0.
ChunkKey VariantKey(const ChunkKey& content_key, std::span<const ChunkKey> context);

struct ContextMatch {
  double overlap = 0;        // attention-weighted share of the old context still present before the chunk, 0..1
  double order_penalty = 0;  // share of pairs of present old-context chunks whose order flipped, 0..1
  double score = 0;          // overlap x (1 - order_penalty): 1 = the same context, 0 = nothing in common
  uint32_t shared = 0;       // old-context chunks still present (how much of the new context the variant saw)
};

// How well a variant's old context (ordered content keys, with the share of the chunk's context attention
// each received; empty or all-zero weights count every chunk the same) matches `new_context`, the ordered
// content keys before the chunk in the new prompt. A variant computed alone matches only an empty new
// context (score 1); otherwise it scores 0. Negative or non-finite weights count as 0.
ContextMatch MatchContext(std::span<const ChunkKey> old_context, std::span<const float> old_weights,
                          std::span<const ChunkKey> new_context);

}  // namespace kvtier
