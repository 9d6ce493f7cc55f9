// CacheBlend token selection (DESIGN §6): which tokens of reused chunks to recompute.
//
// A chunk's cached KV was computed behind another context, so it lacks the cross-attention to the new one.
// CacheBlend recomputes the first layer(s) fully, then at a check layer compares each token's freshly
// computed K or V with its cached one and keeps recomputing only the tokens that deviate most; those run
// attention and the MLP at every later layer, the rest keep their cached KV. With several check layers the
// kept share can shrink from one to the next (gradual filtering). Tokens that have no cached KV (new tokens)
// are always kept and do not count against the ratio.
//
// Stateless functions over caller-owned spans; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier {

// What "deviation" compares: the squared L2 distance between a token's fresh and cached row of K or of V
// (all KV heads of the layer together).
enum class DeviationMetric {
  kKey,
  kValue,
};

struct CacheBlendOptions {
  DeviationMetric metric = DeviationMetric::kValue;  // V deviates more directly into attention outputs
  // Layers at which tokens are selected, ascending. Layers before the first run for every token.
  std::vector<uint32_t> check_layers = {1};
  // Per check layer: the share of reusable tokens (those with cached KV) kept recomputing after it. Each in
  // (0, 1] and none larger than the one before: gradual filtering only narrows. One ratio = one check.
  std::vector<double> ratios = {0.15};

  // INVALID_ARGUMENT naming the problem: sizes differ, a check layer outside [0, num_layers), not ascending,
  // a ratio outside (0, 1] or growing.
  Status Validate(uint32_t num_layers) const;
};

// out[i] = sum over j < row_width of (fresh[i * row_width + j] - cached[i * row_width + j])^2.
// INVALID_ARGUMENT when the spans do not hold out.size() rows.
Status SquaredDeviation(std::span<const float> fresh, std::span<const float> cached, size_t row_width,
                        std::span<float> out);

// The candidates to keep at check layer `check_index`: every must-recompute candidate, plus the
// ceil(ratios[check_index] x reusable_tokens) reusable candidates with the largest deviation (ties: the
// earlier candidate), or all reusable candidates when there are fewer. Returned in candidate order.
// `positions`, `deviation` and `must_recompute` are parallel. INVALID_ARGUMENT for mismatched sizes or a
// check_index without a ratio.
Result<std::vector<int>> SelectByDeviation(const CacheBlendOptions& options, size_t check_index,
                                           std::span<const int> positions, std::span<const float> deviation,
                                           std::span<const uint8_t> must_recompute, size_t reusable_tokens);

}  // namespace kvtier
