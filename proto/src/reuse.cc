#include "kvtier/api/reuse.h"

#include <algorithm>
#include <cmath>
#include <string_view>
#include <utility>
#include <vector>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

namespace kvtier {
namespace {

void UpdateKey(XXH3_state_t* st, const ChunkKey& key) {
  const ChunkKey::Bytes b = key.ToBytes();
  XXH3_128bits_update(st, b.data(), b.size());
}

bool KeyLess(const ChunkKey& a, const ChunkKey& b) { return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo; }

// Position of each key's first occurrence in `keys`, sorted by key for binary search.
std::vector<std::pair<ChunkKey, size_t>> FirstPositions(std::span<const ChunkKey> keys) {
  std::vector<std::pair<ChunkKey, size_t>> index;
  index.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) index.emplace_back(keys[i], i);
  std::stable_sort(index.begin(), index.end(), [](const auto& a, const auto& b) { return KeyLess(a.first, b.first); });
  auto same = [](const auto& a, const auto& b) { return a.first == b.first; };
  index.erase(std::unique(index.begin(), index.end(), same), index.end());
  return index;
}

// Index in the new context, or -1 when absent.
long PositionIn(const std::vector<std::pair<ChunkKey, size_t>>& index, const ChunkKey& key) {
  auto it = std::lower_bound(index.begin(), index.end(), key,
                             [](const auto& entry, const ChunkKey& k) { return KeyLess(entry.first, k); });
  return it != index.end() && it->first == key ? long(it->second) : -1;
}

double Weight(std::span<const float> weights, size_t i, bool uniform) {
  if (uniform) return 1.0;
  const float w = weights[i];
  return std::isfinite(w) && w > 0 ? double(w) : 0.0;
}

}  // namespace

ChunkKey VariantKey(const ChunkKey& content_key, std::span<const ChunkKey> context) {
  static constexpr std::string_view kTag = "kvtier.variant.v1";
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, kTag.data(), kTag.size());
  UpdateKey(&st, content_key);
  const uint32_t m = static_cast<uint32_t>(context.size());
  const uint8_t le[4] = {uint8_t(m), uint8_t(m >> 8), uint8_t(m >> 16), uint8_t(m >> 24)};
  XXH3_128bits_update(&st, le, sizeof(le));
  for (const ChunkKey& key : context) UpdateKey(&st, key);
  const XXH128_hash_t h = XXH3_128bits_digest(&st);
  return ChunkKey{h.high64, h.low64};
}

ContextMatch MatchContext(std::span<const ChunkKey> old_context, std::span<const float> old_weights,
                          std::span<const ChunkKey> new_context) {
  ContextMatch match;
  if (old_context.empty()) {
    match.overlap = new_context.empty() ? 1.0 : 0.0;
    match.score = match.overlap;
    return match;
  }
  bool uniform = old_weights.size() != old_context.size();
  double total = 0;
  for (size_t i = 0; !uniform && i < old_context.size(); ++i) total += Weight(old_weights, i, false);
  if (total <= 0) uniform = true;
  if (uniform) total = double(old_context.size());

  const auto index = FirstPositions(new_context);
  std::vector<long> present;  // new-context positions of the old chunks still there, in old order
  double kept = 0;
  for (size_t i = 0; i < old_context.size(); ++i) {
    const long pos = PositionIn(index, old_context[i]);
    if (pos < 0) continue;
    kept += Weight(old_weights, i, uniform);
    ++match.shared;
    present.push_back(pos);
  }
  match.overlap = std::min(1.0, kept / total);
  size_t pairs = 0, flipped = 0;
  for (size_t i = 0; i < present.size(); ++i) {
    for (size_t j = i + 1; j < present.size(); ++j) {
      ++pairs;
      if (present[i] > present[j]) ++flipped;
    }
  }
  match.order_penalty = pairs == 0 ? 0.0 : double(flipped) / double(pairs);
  match.score = match.overlap * (1.0 - match.order_penalty);
  return match;
}

}  // namespace kvtier
