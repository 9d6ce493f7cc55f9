// Cache-Craft planning (DESIGN §6): how many and which tokens of a reused chunk to recompute, decided from
// the metadata stored with the chunk's variant, with no extra pass over the model.
//
// A variant was computed behind an old context; its metadata says how strongly its tokens attended to that
// context (context impact, CI) and which tokens did so most. The server picked it for the new context with
// a match score (kvtier/api/reuse.h: attention-weighted overlap, penalised for order flips). The part of the
// context effect that is not reproduced is (1 - match), so the plan recomputes
//     count = ceil(alpha x CI x (1 - match) x chunk_tokens)      (capped at chunk_tokens)
// tokens: the ones with the highest per-token context attention. A variant computed alone has no measured
// CI (it saw no context): the planner uses default_context_impact for it, and ranks its tokens by fallback
// scores: the server's means over the chunk's variants computed behind a context (which tokens of a text
// lean on context depends mostly on the text). Without those it recomputes the chunk's first tokens, which
// have the least context of their own.
//
// Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier {

struct CacheCraftOptions {
  double alpha = 1.0;                   // scales every plan; > 0. Larger = more recompute, better quality
  // CI assumed for variants computed alone, in [0, 1]. 0.5 is above the ~0.22 that variants computed behind a
  // context measure on the test model, because an alone variant misses all of its new context; it gave the
  // best quality per recomputed token in kvtier bench-reuse (bench/RESULTS.md).
  double default_context_impact = 0.5;
  Status Validate() const;
};

// What the planner reads of one fetched variant (from its ReuseMetadata and the get's context_match).
struct VariantReuse {
  uint32_t num_tokens = 0;
  bool computed_alone = false;                        // its context was empty
  double context_impact = 0;                          // measured CI, in [0, 1]
  std::span<const float> token_context_attention;     // per token, or empty
  std::span<const float> fallback_token_scores;       // per token, or empty: ranks tokens without own scores
  double context_match = 0;                           // in [0, 1]
};

struct RecomputePlan {
  double context_impact = 0;   // the CI the plan used
  std::vector<uint32_t> tokens;  // chunk-relative indices to recompute, ascending
};

// INVALID_ARGUMENT for bad options, CI or match outside [0, 1], or token scores of the wrong length.
Result<RecomputePlan> PlanRecompute(const CacheCraftOptions& options, const VariantReuse& variant);

}  // namespace kvtier
