#include "kvtier/kvstore/variant_index.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvtier {
namespace {

bool InUnit(float v) { return std::isfinite(v) && v >= 0.0f && v <= 1.0f; }

// INVALID_ARGUMENT naming the first value of `values` outside [0, 1].
Status CheckUnit(std::span<const float> values, std::string_view field) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!InUnit(values[i])) {
      return InvalidArgument("reuse." + std::string(field) + "[" + std::to_string(i) + "] = " +
                             std::to_string(values[i]) + " is not a finite value in [0, 1]");
    }
  }
  return Status::Ok();
}

}  // namespace

Status VariantMeta::Validate(uint32_t num_layers, size_t num_tokens) const {
  if (context.size() > kMaxContext) {
    return InvalidArgument("reuse.context_keys has " + std::to_string(context.size()) + " keys; at most " +
                           std::to_string(kMaxContext) + " are allowed");
  }
  if (!context_attention.empty() && context_attention.size() != context.size()) {
    return InvalidArgument("reuse.context_attention has " + std::to_string(context_attention.size()) +
                           " values for " + std::to_string(context.size()) + " context keys (must be empty or equal)");
  }
  for (size_t i = 0; i < context_attention.size(); ++i) {
    if (!std::isfinite(context_attention[i]) || context_attention[i] < 0) {
      return InvalidArgument("reuse.context_attention[" + std::to_string(i) + "] = " +
                             std::to_string(context_attention[i]) + " is not a finite value >= 0");
    }
  }
  if (!InUnit(context_impact)) {
    return InvalidArgument("reuse.context_impact = " + std::to_string(context_impact) +
                           " is not a finite value in [0, 1]");
  }
  if (!layer_context_impact.empty() && layer_context_impact.size() != num_layers) {
    return InvalidArgument("reuse.layer_context_impact has " + std::to_string(layer_context_impact.size()) +
                           " values for " + std::to_string(num_layers) + " layers (must be empty or equal)");
  }
  KVTIER_RETURN_IF_ERROR(CheckUnit(layer_context_impact, "layer_context_impact"));
  if (!token_context_attention.empty() && token_context_attention.size() != num_tokens) {
    return InvalidArgument("reuse.token_context_attention has " + std::to_string(token_context_attention.size()) +
                           " values for " + std::to_string(num_tokens) + " tokens (must be empty or equal)");
  }
  return CheckUnit(token_context_attention, "token_context_attention");
}

Status VariantOptions::Validate() const {
  if (max_variants < 1 || max_variants > 64) {
    return InvalidArgument("reuse.max_variants must be in [1, 64], got " + std::to_string(max_variants));
  }
  if (admission != "replace-least-recent" && admission != "keep-existing") {
    return InvalidArgument("reuse.admission must be replace-least-recent or keep-existing, got '" + admission + "'");
  }
  return Status::Ok();
}

VariantAdmission VariantOptions::admission_policy() const {
  return admission == "keep-existing" ? VariantAdmission::kKeepExisting : VariantAdmission::kReplaceLeastRecent;
}

GroupContextHint GroupHint(std::span<const VariantCandidate> candidates, size_t num_tokens) {
  GroupContextHint hint;
  std::vector<double> sum(num_tokens, 0.0);
  double impact = 0;
  for (const VariantCandidate& c : candidates) {
    const VariantMeta& m = *c.meta;
    if (m.context.empty() || m.token_context_attention.size() != num_tokens) continue;
    for (size_t t = 0; t < num_tokens; ++t) sum[t] += m.token_context_attention[t];
    impact += m.context_impact;
    ++hint.variants;
  }
  if (hint.variants == 0) return hint;
  hint.token_context_attention.resize(num_tokens);
  for (size_t t = 0; t < num_tokens; ++t) hint.token_context_attention[t] = float(sum[t] / hint.variants);
  hint.context_impact = float(impact / hint.variants);
  return hint;
}

void RankVariants(std::span<const ChunkKey> new_context, std::vector<VariantCandidate>* candidates) {
  for (VariantCandidate& c : *candidates) {
    c.match = MatchContext(c.meta->context, c.meta->context_attention, new_context);
  }
  std::sort(candidates->begin(), candidates->end(), [](const VariantCandidate& a, const VariantCandidate& b) {
    if (a.match.score != b.match.score) return a.match.score > b.match.score;
    // Equal positive scores: the variant that saw more of the new context. Then (any score) the one that saw
    // less foreign context.
    if (a.match.score > 0 && a.match.shared != b.match.shared) return a.match.shared > b.match.shared;
    if (a.meta->context.size() != b.meta->context.size()) return a.meta->context.size() < b.meta->context.size();
    return a.put_seq > b.put_seq;
  });
}

VariantIndex::AddOutcome VariantIndex::Add(uint32_t ns_id, uint32_t fp_id, const ChunkKey& variant_key,
                                           std::shared_ptr<const VariantMeta> meta, int64_t now_ns) {
  AddOutcome out;
  if (by_variant_.contains({ns_id, variant_key})) {
    out.already_indexed = true;
    return out;
  }
  Group& group = groups_[{ns_id, meta->content_key}];
  if (group.variants.empty()) group.fp_id = fp_id;
  if (group.variants.size() >= max_variants_) {
    if (admission_ == VariantAdmission::kKeepExisting) {
      out.admitted = false;
      return out;
    }
    auto victim = std::min_element(group.variants.begin(), group.variants.end(), [](const Variant& a, const Variant& b) {
      return a.recency() != b.recency() ? a.recency() < b.recency() : a.put_seq < b.put_seq;
    });
    out.replaced = victim->key;
    by_variant_.erase({ns_id, victim->key});
    group.variants.erase(victim);
  }
  by_variant_.emplace(NsKey{ns_id, variant_key}, meta->content_key);
  out.put_seq = next_seq_++;
  group.variants.push_back({variant_key, std::move(meta), out.put_seq, now_ns, -1});
  return out;
}

bool VariantIndex::Restore(uint32_t ns_id, uint32_t fp_id, const ChunkKey& variant_key,
                           std::shared_ptr<const VariantMeta> meta, uint64_t put_seq) {
  if (by_variant_.contains({ns_id, variant_key})) return false;
  auto [it, created] = groups_.try_emplace({ns_id, meta->content_key});
  Group& group = it->second;
  if (created) group.fp_id = fp_id;
  if (group.fp_id != fp_id || group.variants.size() >= max_variants_) return false;
  by_variant_.emplace(NsKey{ns_id, variant_key}, meta->content_key);
  group.variants.push_back({variant_key, std::move(meta), put_seq, std::numeric_limits<int64_t>::min(), -1});
  next_seq_ = std::max(next_seq_, put_seq + 1);
  return true;
}

bool VariantIndex::WouldAdmit(uint32_t ns_id, const ChunkKey& content_key, const ChunkKey& variant_key) const {
  if (admission_ == VariantAdmission::kReplaceLeastRecent || by_variant_.contains({ns_id, variant_key})) return true;
  auto it = groups_.find({ns_id, content_key});
  return it == groups_.end() || it->second.variants.size() < max_variants_;
}

std::optional<uint32_t> VariantIndex::GroupFingerprint(uint32_t ns_id, const ChunkKey& content_key) const {
  auto it = groups_.find({ns_id, content_key});
  if (it == groups_.end()) return std::nullopt;
  return it->second.fp_id;
}

std::vector<VariantCandidate> VariantIndex::Candidates(uint32_t ns_id, const ChunkKey& content_key) const {
  std::vector<VariantCandidate> out;
  auto it = groups_.find({ns_id, content_key});
  if (it == groups_.end()) return out;
  out.reserve(it->second.variants.size());
  for (const Variant& v : it->second.variants) out.push_back({v.key, v.meta, v.put_seq, {}});
  return out;
}

std::shared_ptr<const VariantMeta> VariantIndex::Find(uint32_t ns_id, const ChunkKey& variant_key) const {
  auto it = by_variant_.find({ns_id, variant_key});
  if (it == by_variant_.end()) return nullptr;
  for (const Variant& v : groups_.at({ns_id, it->second}).variants) {
    if (v.key == variant_key) return v.meta;
  }
  return nullptr;
}

void VariantIndex::MarkChosen(uint32_t ns_id, const ChunkKey& variant_key, int64_t now_ns) {
  auto it = by_variant_.find({ns_id, variant_key});
  if (it == by_variant_.end()) return;
  for (Variant& v : groups_.at({ns_id, it->second}).variants) {
    if (v.key == variant_key) v.chosen_ns = std::max(v.chosen_ns, now_ns);
  }
}

bool VariantIndex::Remove(uint32_t ns_id, const ChunkKey& variant_key) {
  auto it = by_variant_.find({ns_id, variant_key});
  if (it == by_variant_.end()) return false;
  auto group = groups_.find({ns_id, it->second});
  by_variant_.erase(it);
  auto& variants = group->second.variants;
  std::erase_if(variants, [&](const Variant& v) { return v.key == variant_key; });
  if (variants.empty()) groups_.erase(group);
  return true;
}

std::vector<ChunkKey> VariantIndex::RemoveGroup(uint32_t ns_id, const ChunkKey& content_key) {
  std::vector<ChunkKey> keys;
  auto it = groups_.find({ns_id, content_key});
  if (it == groups_.end()) return keys;
  for (const Variant& v : it->second.variants) {
    keys.push_back(v.key);
    by_variant_.erase({ns_id, v.key});
  }
  groups_.erase(it);
  return keys;
}

}  // namespace kvtier
