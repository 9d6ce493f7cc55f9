// VariantIndex: the variants of content-mode chunks (DESIGN §6, docs/keys.md "Variants").
//
// The same content-mode chunk computed behind different contexts is stored as up to max_variants chunks,
// each under its variant key, with the reuse metadata the engine produced at prefill. The index maps a
// (namespace, content key) group to its variants, records when each was put and last chosen, decides
// admission when a group is full, and ranks a group's variants for a new context with MatchContext
// (kvtier/api/reuse.h). It holds no chunk bytes: the Store owns the chunks and keeps the index in step
// (a chunk that leaves the Store leaves the index). A group's fingerprint is that of its first variant.
// With the NVMe tier the Store persists each admitted variant (put sequence included) and Restores the
// index at start; last-chosen times are not persisted.
//
// Memory: per variant about 250 bytes of bookkeeping (group slot, reverse map node, shared metadata),
// plus 20 bytes per context chunk, 4 per layer and 4 per token of its metadata.
//
// Thread-safety: none; the owner (Store) guards it with its mutex. VariantMeta is immutable once shared,
// so candidates can be ranked outside that lock.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvtier/api/reuse.h"
#include "kvtier/api/status.h"
#include "kvtier/api/types.h"

namespace kvtier {

// Reuse metadata of one variant (v1::ReuseMetadata in engine terms).
struct VariantMeta {
  ChunkKey content_key;                       // the group: content-mode key of the chunk's tokens
  std::vector<ChunkKey> context;              // content keys it was computed behind, in order; empty = alone
  std::vector<float> context_attention;       // parallel to context, or empty
  float context_impact = 0;                   // 0..1
  std::vector<float> layer_context_impact;    // per layer, or empty
  std::vector<float> token_context_attention; // per token, or empty

  static constexpr size_t kMaxContext = 1024;  // most context chunks a variant may name

  // Sizes and values against the chunk's shape (INVALID_ARGUMENT naming the field). The key checks
  // (variant key, content key of the tokens) are the Store's.
  Status Validate(uint32_t num_layers, size_t num_tokens) const;
};

enum class VariantAdmission {
  kReplaceLeastRecent,  // a new variant of a full group replaces the one chosen least recently
  kKeepExisting,        // a new variant of a full group is not stored
};

struct VariantOptions {
  uint32_t max_variants = 4;                        // per group, 1..64 (config reuse.max_variants)
  std::string admission = "replace-least-recent";  // or keep-existing (config reuse.admission)

  Status Validate() const;
  VariantAdmission admission_policy() const;  // after Validate
};

// One variant as a selection sees it.
struct VariantCandidate {
  ChunkKey variant_key;
  std::shared_ptr<const VariantMeta> meta;
  uint64_t put_seq = 0;  // higher = put later
  ContextMatch match;    // filled by RankVariants
};

// What a group's variants computed behind a context measured, averaged: a planning hint for a variant
// computed alone (DESIGN §6). Variants whose per-token scores are missing or of another length do not count.
struct GroupContextHint {
  std::vector<float> token_context_attention;  // per token; empty when no variant counted
  float context_impact = 0;
  uint32_t variants = 0;                       // how many variants the means are over
};
GroupContextHint GroupHint(std::span<const VariantCandidate> candidates, size_t num_tokens);

// Scores each candidate's old context against `new_context` and sorts best first: highest score, then (for a
// positive score) more old-context chunks present in the new context, then fewer context chunks, then the most recently put.
void RankVariants(std::span<const ChunkKey> new_context, std::vector<VariantCandidate>* candidates);

class VariantIndex {
 public:
  VariantIndex(uint32_t max_variants, VariantAdmission admission)
      : max_variants_(max_variants), admission_(admission) {}

  struct AddOutcome {
    bool admitted = true;              // false: keep-existing and the group is full (nothing indexed)
    bool already_indexed = false;      // the variant key was indexed before (nothing changed)
    std::optional<ChunkKey> replaced;  // the variant it replaced; the owner deletes that chunk
    uint64_t put_seq = 0;              // the new variant's put sequence (when admitted and new)
  };
  // Indexes `variant_key` in its group (meta->content_key). The caller checked the group's fingerprint.
  AddOutcome Add(uint32_t ns_id, uint32_t fp_id, const ChunkKey& variant_key, std::shared_ptr<const VariantMeta> meta,
                 int64_t now_ns);
  // Re-indexes a variant persisted before a restart under its old put sequence; later puts get higher ones.
  // It ranks as never chosen and older than any variant put since. False (nothing indexed) when already
  // indexed, when the group is full or when the group has another fingerprint: restore newest first.
  bool Restore(uint32_t ns_id, uint32_t fp_id, const ChunkKey& variant_key, std::shared_ptr<const VariantMeta> meta,
               uint64_t put_seq);
  // Whether Add would index it (true when already indexed or when the group has room or replaces).
  bool WouldAdmit(uint32_t ns_id, const ChunkKey& content_key, const ChunkKey& variant_key) const;
  // The fingerprint of a group; nullopt when the namespace has no such group.
  std::optional<uint32_t> GroupFingerprint(uint32_t ns_id, const ChunkKey& content_key) const;
  // The group's variants, unranked (empty when none).
  std::vector<VariantCandidate> Candidates(uint32_t ns_id, const ChunkKey& content_key) const;
  // The metadata of a variant key; null when it is not a variant.
  std::shared_ptr<const VariantMeta> Find(uint32_t ns_id, const ChunkKey& variant_key) const;
  // A get returned this variant: it becomes the most recently chosen of its group.
  void MarkChosen(uint32_t ns_id, const ChunkKey& variant_key, int64_t now_ns);
  // Forgets a variant (its chunk left the store). False when it was not indexed.
  bool Remove(uint32_t ns_id, const ChunkKey& variant_key);
  // Forgets a whole group and returns its variant keys.
  std::vector<ChunkKey> RemoveGroup(uint32_t ns_id, const ChunkKey& content_key);

  size_t variants() const { return by_variant_.size(); }
  size_t groups() const { return groups_.size(); }
  uint32_t max_variants() const { return max_variants_; }

 private:
  struct NsKey {
    uint32_t ns_id;
    ChunkKey key;
    bool operator==(const NsKey&) const = default;
  };
  struct NsKeyHasher {
    size_t operator()(const NsKey& k) const { return ChunkKeyHasher()(k.key) ^ (size_t{k.ns_id} * 0x9e3779b97f4a7c15ull); }
  };
  struct Variant {
    ChunkKey key;
    std::shared_ptr<const VariantMeta> meta;
    uint64_t put_seq = 0;
    int64_t put_ns = 0;
    int64_t chosen_ns = -1;  // -1: never chosen (its put time counts)
    int64_t recency() const { return chosen_ns >= 0 ? chosen_ns : put_ns; }
  };
  struct Group {
    uint32_t fp_id = 0;
    std::vector<Variant> variants;
  };

  const uint32_t max_variants_;
  const VariantAdmission admission_;
  uint64_t next_seq_ = 1;
  std::unordered_map<NsKey, Group, NsKeyHasher> groups_;
  std::unordered_map<NsKey, ChunkKey, NsKeyHasher> by_variant_;  // variant key -> content key
};

}  // namespace kvtier
