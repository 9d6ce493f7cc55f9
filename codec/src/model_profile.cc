// ModelProfile: serialized form and table building (CACHEGEN.md "Shared profiles").
#include "kvtier/codec/model_profile.h"

#include <xxhash.h>

#include <cstring>
#include <string>

#include "cachegen_tables.h"

namespace kvtier::codec {
namespace {

using internal::kCacheGenLevels;

constexpr uint32_t kProfileMagic = 0x5043564b;  // "KVCP" in file order
constexpr uint16_t kProfileVersion = 1;
constexpr size_t kProfileHeaderBytes = 20;
constexpr size_t kProfileTrailerBytes = 8;        // XXH3-64 of everything before it
constexpr uint32_t kBuildTokensPerStream = 256;  // anchor groups as the encoder's default streams

template <typename T>
void Append(std::vector<std::byte>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}
template <typename T>
T Load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

Status CheckSamples(std::span<const KvView> samples, const ProfileBuildOptions& options) {
  if (samples.empty()) return InvalidArgument("cachegen profile: no sample chunks");
  uint64_t tokens = 0;
  const KvShape& first = samples[0].shape;
  for (size_t i = 0; i < samples.size(); ++i) {
    const KvShape& s = samples[i].shape;
    KVTIER_RETURN_IF_ERROR(s.Validate());
    if (samples[i].data.size() != s.RawBytes()) {
      return InvalidArgument("cachegen profile: sample " + std::to_string(i) + " has " +
                             std::to_string(samples[i].data.size()) + " bytes, its shape needs " +
                             std::to_string(s.RawBytes()));
    }
    if (s.num_layers != first.num_layers || s.num_kv_heads != first.num_kv_heads || s.head_dim != first.head_dim) {
      return InvalidArgument("cachegen profile: sample " + std::to_string(i) + " has another layers/kv_heads/head_dim");
    }
    tokens += s.num_tokens;
  }
  if (tokens < options.min_sample_tokens) {
    return InvalidArgument("cachegen profile: " + std::to_string(tokens) + " sample tokens, at least " +
                           std::to_string(options.min_sample_tokens) + " needed");
  }
  return Status::Ok();
}

}  // namespace

Result<ModelProfile> ModelProfile::Build(std::span<const KvView> samples, const ProfileBuildOptions& options) {
  KVTIER_RETURN_IF_ERROR(CheckSamples(samples, options));
  const KvShape& shape = samples[0].shape;
  const uint32_t layers = shape.num_layers;
  const uint32_t width = shape.num_kv_heads * shape.head_dim;

  std::vector<std::byte> bytes;
  Append(bytes, kProfileMagic);
  Append(bytes, kProfileVersion);
  Append(bytes, static_cast<uint8_t>(internal::kProbBits));
  Append(bytes, static_cast<uint8_t>(kCacheGenLevels));
  Append(bytes, layers);
  Append(bytes, shape.num_kv_heads);
  Append(bytes, shape.head_dim);
  for (int level = 1; level <= kCacheGenLevels; ++level) {
    for (uint32_t lk = 0; lk < 2 * layers; ++lk) {
      Append(bytes, static_cast<uint8_t>(internal::DefaultBins(level, lk / 2, layers, lk % 2)));
    }
  }
  internal::SliceSymbols sym;
  std::vector<uint32_t> counts, sample_counts;
  for (int level = 1; level <= kCacheGenLevels; ++level) {
    for (uint32_t lk = 0; lk < 2 * layers; ++lk) {
      const uint32_t bins = internal::DefaultBins(level, lk / 2, layers, lk % 2);
      const uint32_t alphabet = 2 * bins + 1;
      counts.assign(size_t{2} * width * alphabet, 0);
      for (const KvView& s : samples) {
        const std::byte* src = s.data.data() + size_t{lk} * s.shape.num_tokens * width * DTypeBytes(s.shape.dtype);
        // Plain tables from every row quantized on its own, delta tables from anchor-delta rows.
        for (const bool anchor : {false, true}) {
          KVTIER_RETURN_IF_ERROR(internal::QuantizeSlice(src, s.shape.dtype, s.shape.num_tokens, width, bins, anchor,
                                                         kBuildTokensPerStream, sym));
          sample_counts.assign(counts.size(), 0);
          internal::CountSymbols(sym, s.shape.num_tokens, width, bins, anchor, kBuildTokensPerStream, !anchor, anchor,
                                 sample_counts);
          for (size_t i = 0; i < counts.size(); ++i) counts[i] += sample_counts[i];
        }
      }
      for (size_t i = 0; i < size_t{2} * width; ++i) {
        internal::AppendTable(&counts[i * alphabet], bins, internal::WeightCodes::kByte, true, bytes);
      }
    }
  }
  Append(bytes, static_cast<uint64_t>(XXH3_64bits(bytes.data(), bytes.size())));
  return Deserialize(bytes);
}

Result<ModelProfile> ModelProfile::Deserialize(std::span<const std::byte> bytes) {
  if (bytes.size() < kProfileHeaderBytes + kProfileTrailerBytes) {
    return InvalidArgument("cachegen profile is truncated (" + std::to_string(bytes.size()) + " bytes)");
  }
  if (Load<uint32_t>(bytes.data()) != kProfileMagic) return InvalidArgument("not a cachegen profile (bad magic)");
  const size_t body = bytes.size() - kProfileTrailerBytes;
  if (XXH3_64bits(bytes.data(), body) != Load<uint64_t>(bytes.data() + body)) {
    return DataLoss("cachegen profile checksum mismatch (corrupt or truncated)");
  }
  const uint16_t version = Load<uint16_t>(bytes.data() + 4);
  if (version != kProfileVersion) {
    return InvalidArgument("unsupported cachegen profile version " + std::to_string(version));
  }
  if (static_cast<uint8_t>(bytes[6]) != internal::kProbBits || static_cast<uint8_t>(bytes[7]) != kCacheGenLevels) {
    return InvalidArgument("cachegen profile has unsupported precision or level count");
  }
  auto tables = std::make_unique<ProfileTables>();
  tables->num_layers = Load<uint32_t>(bytes.data() + 8);
  tables->num_kv_heads = Load<uint32_t>(bytes.data() + 12);
  tables->head_dim = Load<uint32_t>(bytes.data() + 16);
  const KvShape shape{tables->num_layers, tables->num_kv_heads, tables->head_dim, 1, DType::kFp16};
  if (Status s = shape.Validate(); !s.ok()) return InvalidArgument("cachegen profile: " + s.message());
  const uint32_t slices = 2 * tables->num_layers;
  const uint64_t width = uint64_t{tables->num_kv_heads} * tables->head_dim;
  // Bins bytes plus at least 3 bytes per table: refuse before allocating what the input cannot hold.
  if (uint64_t{kCacheGenLevels} * slices * (1 + 2 * width * 3) > body - kProfileHeaderBytes) {
    return InvalidArgument("cachegen profile is too short for its shape");
  }
  const std::span<const std::byte> in = bytes.first(body);
  size_t pos = kProfileHeaderBytes;
  const size_t bins_at = pos;
  pos += size_t{kCacheGenLevels} * slices;
  for (int level = 0; level < kCacheGenLevels; ++level) {
    tables->levels[level].resize(slices);
    for (uint32_t lk = 0; lk < slices; ++lk) {
      const uint32_t bins = static_cast<uint8_t>(in[bins_at + static_cast<size_t>(level) * slices + lk]);
      if (!internal::ParseSliceTables(in, pos, bins, 2, static_cast<uint32_t>(width), internal::WeightCodes::kByte,
                                      tables->levels[level][lk])) {
        return InvalidArgument("cachegen profile: malformed tables of level " + std::to_string(level + 1) + " slice " +
                               std::to_string(lk));
      }
    }
  }
  if (pos != body) return InvalidArgument("cachegen profile has trailing bytes");
  return ModelProfile(std::move(tables), std::vector<std::byte>(bytes.begin(), bytes.end()));
}

ModelProfile::ModelProfile(std::unique_ptr<ProfileTables> tables, std::vector<std::byte> serialized)
    : tables_(std::move(tables)), serialized_(std::move(serialized)),
      id_(XXH3_64bits(serialized_.data(), serialized_.size())) {}
ModelProfile::ModelProfile(ModelProfile&&) noexcept = default;
ModelProfile& ModelProfile::operator=(ModelProfile&&) noexcept = default;
ModelProfile::~ModelProfile() = default;

uint32_t ModelProfile::num_layers() const { return tables_->num_layers; }
uint32_t ModelProfile::num_kv_heads() const { return tables_->num_kv_heads; }
uint32_t ModelProfile::head_dim() const { return tables_->head_dim; }

}  // namespace kvtier::codec
