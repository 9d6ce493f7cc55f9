#include "kvtier/client/cachecraft.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace kvtier {
namespace {

bool UnitInterval(double x) { return std::isfinite(x) && x >= 0.0 && x <= 1.0; }

// Indices of the `count` largest scores (ties: the earlier token), ascending.
std::vector<uint32_t> TopTokens(std::span<const float> scores, uint32_t count) {
  std::vector<uint32_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0u);
  auto score = [&](uint32_t i) { return std::isfinite(scores[i]) ? scores[i] : 0.0f; };
  std::partial_sort(order.begin(), order.begin() + count, order.end(),
                    [&](uint32_t a, uint32_t b) { return score(a) != score(b) ? score(a) > score(b) : a < b; });
  order.resize(count);
  std::sort(order.begin(), order.end());
  return order;
}

bool AnyPositive(std::span<const float> scores) {
  return std::any_of(scores.begin(), scores.end(), [](float s) { return std::isfinite(s) && s > 0; });
}

}  // namespace

Status CacheCraftOptions::Validate() const {
  if (!(std::isfinite(alpha) && alpha > 0)) return InvalidArgument("Cache-Craft alpha must be > 0");
  if (!UnitInterval(default_context_impact)) {
    return InvalidArgument("Cache-Craft default_context_impact must be in [0, 1]");
  }
  return Status::Ok();
}

Result<RecomputePlan> PlanRecompute(const CacheCraftOptions& options, const VariantReuse& variant) {
  if (Status s = options.Validate(); !s.ok()) return s;
  if (!UnitInterval(variant.context_impact)) return InvalidArgument("context impact outside [0, 1]");
  if (!UnitInterval(variant.context_match)) return InvalidArgument("context match outside [0, 1]");
  const auto& scores = variant.token_context_attention;
  if (!scores.empty() && scores.size() != variant.num_tokens) {
    return InvalidArgument("token context attention has " + std::to_string(scores.size()) + " scores for " +
                           std::to_string(variant.num_tokens) + " tokens");
  }
  const auto& fallback = variant.fallback_token_scores;
  if (!fallback.empty() && fallback.size() != variant.num_tokens) {
    return InvalidArgument("fallback token scores have " + std::to_string(fallback.size()) + " scores for " +
                           std::to_string(variant.num_tokens) + " tokens");
  }
  RecomputePlan plan;
  plan.context_impact = variant.computed_alone ? options.default_context_impact : variant.context_impact;
  const double want = options.alpha * plan.context_impact * (1.0 - variant.context_match) * variant.num_tokens;
  const uint32_t count = uint32_t(std::min<double>(variant.num_tokens, std::ceil(want - 1e-9)));
  if (count == 0) return plan;
  if (AnyPositive(scores)) {
    plan.tokens = TopTokens(scores, count);
  } else if (AnyPositive(fallback)) {
    plan.tokens = TopTokens(fallback, count);
  } else {
    plan.tokens.resize(count);
    std::iota(plan.tokens.begin(), plan.tokens.end(), 0u);
  }
  return plan;
}

}  // namespace kvtier
