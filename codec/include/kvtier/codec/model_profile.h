// ModelProfile: the cachegen symbol-frequency tables of one model, built once from sample chunks and
// shared by every chunk that references it, so chunks do not carry their own tables.
//
// A profile holds tables for every quality level and both anchor-delta settings, for one KV shape
// (layers, KV heads, head dim; any token count). Its id is the XXH3-64 of its serialized bytes: the
// server stores the bytes under a name and this id (PutProfile), chunks reference the id, and a put or
// decode that references an unknown id is refused. Serialization is versioned and checksummed
// (CACHEGEN.md); Deserialize treats its input as hostile.
//
// Immutable after construction: share it across threads as const.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/codec/codec.h"

namespace kvtier::codec {

struct ProfileTables;  // private to the codec

struct ProfileBuildOptions {
  // Sample chunks must share layers/heads/head_dim; more tokens give tables closer to the data.
  // Fewer than this many sample tokens in total is INVALID_ARGUMENT.
  uint32_t min_sample_tokens = 16;
};

class ModelProfile {
 public:
  // Builds tables from sample chunks of one shape (token counts may differ).
  static Result<ModelProfile> Build(std::span<const KvView> samples, const ProfileBuildOptions& options = {});
  // INVALID_ARGUMENT / DATA_LOSS for malformed, truncated or corrupt bytes.
  static Result<ModelProfile> Deserialize(std::span<const std::byte> bytes);

  ModelProfile(ModelProfile&&) noexcept;
  ModelProfile& operator=(ModelProfile&&) noexcept;
  ~ModelProfile();

  std::span<const std::byte> serialized() const { return serialized_; }
  uint64_t id() const { return id_; }
  uint32_t num_layers() const;
  uint32_t num_kv_heads() const;
  uint32_t head_dim() const;

  const ProfileTables& tables() const { return *tables_; }  // for the codec's implementation

 private:
  ModelProfile(std::unique_ptr<ProfileTables> tables, std::vector<std::byte> serialized);

  std::unique_ptr<ProfileTables> tables_;
  std::vector<std::byte> serialized_;
  uint64_t id_ = 0;
};

}  // namespace kvtier::codec
