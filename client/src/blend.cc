#include "kvtier/client/blend.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace kvtier {

Status CacheBlendOptions::Validate(uint32_t num_layers) const {
  if (check_layers.empty()) return InvalidArgument("CacheBlend needs at least one check layer");
  if (ratios.size() != check_layers.size()) {
    return InvalidArgument("CacheBlend has " + std::to_string(check_layers.size()) + " check layers but " +
                           std::to_string(ratios.size()) + " ratios; give one ratio per check layer");
  }
  for (size_t i = 0; i < check_layers.size(); ++i) {
    if (check_layers[i] >= num_layers) {
      return InvalidArgument("CacheBlend check layer " + std::to_string(check_layers[i]) + " outside [0, " +
                             std::to_string(num_layers) + ")");
    }
    if (i > 0 && check_layers[i] <= check_layers[i - 1]) {
      return InvalidArgument("CacheBlend check layers must be ascending");
    }
    if (!(ratios[i] > 0.0 && ratios[i] <= 1.0)) {
      return InvalidArgument("CacheBlend ratio " + std::to_string(ratios[i]) + " outside (0, 1]");
    }
    if (i > 0 && ratios[i] > ratios[i - 1]) {
      return InvalidArgument("CacheBlend ratios must not grow from one check layer to the next (" +
                             std::to_string(ratios[i - 1]) + " then " + std::to_string(ratios[i]) + ")");
    }
  }
  return Status::Ok();
}

Status SquaredDeviation(std::span<const float> fresh, std::span<const float> cached, size_t row_width,
                        std::span<float> out) {
  const size_t need = out.size() * row_width;
  if (fresh.size() != need || cached.size() != need) {
    return InvalidArgument("SquaredDeviation of " + std::to_string(out.size()) + " rows of " +
                           std::to_string(row_width) + " needs " + std::to_string(need) + " floats each, got " +
                           std::to_string(fresh.size()) + " fresh and " + std::to_string(cached.size()) + " cached");
  }
  for (size_t i = 0; i < out.size(); ++i) {
    double sum = 0;
    for (size_t j = 0; j < row_width; ++j) {
      const double d = double(fresh[i * row_width + j]) - double(cached[i * row_width + j]);
      sum += d * d;
    }
    out[i] = float(sum);
  }
  return Status::Ok();
}

Result<std::vector<int>> SelectByDeviation(const CacheBlendOptions& options, size_t check_index,
                                           std::span<const int> positions, std::span<const float> deviation,
                                           std::span<const uint8_t> must_recompute, size_t reusable_tokens) {
  if (check_index >= options.ratios.size()) {
    return InvalidArgument("check index " + std::to_string(check_index) + " has no ratio (" +
                           std::to_string(options.ratios.size()) + " given)");
  }
  if (deviation.size() != positions.size() || must_recompute.size() != positions.size()) {
    return InvalidArgument("SelectByDeviation: " + std::to_string(positions.size()) + " positions but " +
                           std::to_string(deviation.size()) + " deviations and " +
                           std::to_string(must_recompute.size()) + " must-recompute flags");
  }
  const size_t budget = size_t(std::ceil(options.ratios[check_index] * double(reusable_tokens) - 1e-9));
  std::vector<size_t> reusable;
  for (size_t i = 0; i < positions.size(); ++i) {
    if (!must_recompute[i]) reusable.push_back(i);
  }
  // NaN deviations sort as the largest: a token whose recomputation blew up is the first to check.
  auto larger = [&](size_t a, size_t b) {
    const float da = std::isnan(deviation[a]) ? INFINITY : deviation[a];
    const float db = std::isnan(deviation[b]) ? INFINITY : deviation[b];
    return da != db ? da > db : a < b;
  };
  const size_t keep = std::min(budget, reusable.size());
  std::partial_sort(reusable.begin(), reusable.begin() + keep, reusable.end(), larger);
  std::vector<uint8_t> kept(positions.size(), 0);
  for (size_t k = 0; k < keep; ++k) kept[reusable[k]] = 1;
  std::vector<int> out;
  for (size_t i = 0; i < positions.size(); ++i) {
    if (kept[i] || must_recompute[i]) out.push_back(positions[i]);
  }
  return out;
}

}  // namespace kvtier
