// Random cachegen chunks shared by the twin tests and the kernel tests of cachegen decoding: random shapes,
// quality levels, anchor-delta on or off, inline tables or a shared profile, tokens per stream that split the
// chunk into several sub-chunks, and values of several kinds (noisy with outliers, smooth rows for
// anchor-delta, values at the edge of the dtype's range for the clamp, tiny values for subnormal scales),
// encoded by the codec's real encoder.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "data_path_cases.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/convert.h"
#include "kvtier/codec/model_profile.h"
#include "kvtier/gpu/cachegen_decode.h"

namespace kvtier::gpu::testing {

struct CachegenCase {
  ChunkShape shape;
  int level = 2;
  bool anchor_delta = false;
  uint32_t tokens_per_stream = 256;
  std::shared_ptr<const codec::ModelProfile> profile;  // null: inline tables
  DataBytes chunk;
  DataBytes encoded;

  codec::KvShape CodecShape() const {
    return codec::KvShape{shape.num_layers, shape.num_kv_heads, shape.head_dim, shape.num_tokens, shape.dtype};
  }
  codec::ProfileResolver Resolver() const {
    std::shared_ptr<const codec::ModelProfile> p = profile;
    return [p](uint64_t id) { return p != nullptr && p->id() == id ? p.get() : nullptr; };
  }
  std::string Describe() const {
    return DescribeShape(shape) + " level " + std::to_string(level) + (anchor_delta ? " anchor" : "") + " tps " +
           std::to_string(tokens_per_stream) + (profile ? " profile" : " inline");
  }
};

// Values of one of four kinds, as floats of the chunk's canonical layout.
inline std::vector<float> CachegenValues(std::mt19937_64& rng, const ChunkShape& s) {
  const size_t row = size_t{s.num_kv_heads} * s.head_dim;
  const size_t rows = size_t{s.num_layers} * 2 * s.num_tokens;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(rows * row);
  const uint32_t kind = static_cast<uint32_t>(rng() % 6);
  if (kind <= 2) {  // noisy, a few outliers (the int8 tests' chunks)
    const DataBytes bytes = RandomChunk(rng, ChunkShape{s.num_layers, s.num_tokens, s.num_kv_heads, s.head_dim,
                                                        DType::kFp32});
    std::memcpy(v.data(), bytes.data(), bytes.size());
  } else if (kind == 3) {  // smooth along tokens: one base per channel, small steps (anchor-delta's case)
    std::vector<float> base(row);
    for (float& b : base) b = normal(rng) * 3.0f;
    for (size_t r = 0; r < rows; ++r) {
      for (size_t c = 0; c < row; ++c) v[r * row + c] = base[c] += normal(rng) * 0.05f;
    }
  } else {  // near the top of the dtype's range (the decoder clamps) or tiny (subnormal scales)
    const bool huge = kind == 4;
    const float top = s.dtype == DType::kFp16 ? 65504.0f : 1.5e38f;
    const float tiny = s.dtype == DType::kFp16 ? 3e-7f : s.dtype == DType::kBf16 ? 1e-38f : 2e-43f;
    for (float& x : v) x = (huge ? top : tiny) * std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
    if (huge) v[rng() % v.size()] = rng() % 2 ? top : -top;
  }
  return v;
}

// A profile for the case's layers/heads/head_dim built from a sample chunk of its own.
inline std::shared_ptr<const codec::ModelProfile> CachegenProfile(std::mt19937_64& rng, const ChunkShape& s) {
  const ChunkShape sample_shape{s.num_layers, Pick(rng, 16, 64), s.num_kv_heads, s.head_dim, DType::kFp32};
  const DataBytes sample = RandomChunk(rng, sample_shape);
  const codec::KvView view{codec::KvShape{s.num_layers, s.num_kv_heads, s.head_dim, sample_shape.num_tokens,
                                          DType::kFp32},
                           sample,
                           {}};
  Result<codec::ModelProfile> p = codec::ModelProfile::Build(std::span(&view, 1));
  if (!p.ok()) return nullptr;
  return std::make_shared<const codec::ModelProfile>(std::move(p).value());
}

inline uint32_t RandomTokensPerStream(std::mt19937_64& rng, uint32_t tokens) {
  const uint32_t choices[] = {1, 2, 7, 10, 16, 33, 100, 256, Pick(rng, 1, 256), Pick(rng, 1, std::max(1u, tokens))};
  return choices[rng() % 10];
}

inline ChunkShape RandomCachegenShape(std::mt19937_64& rng, DType dtype) {
  const uint32_t size = static_cast<uint32_t>(rng() % 10);
  const uint32_t tokens = size < 5 ? Pick(rng, 1, 40) : size < 8 ? Pick(rng, 41, 150) : Pick(rng, 151, 300);
  return ChunkShape{Pick(rng, 1, 4), tokens, Pick(rng, 1, 4), Pick(rng, 1, 128), dtype};
}

// Fresh random values for `c.chunk`, encoded with c's level, anchor-delta setting, tokens per stream and
// profile into `c.encoded` (empty when the codec refused: a test failure).
inline void EncodeCachegenCase(std::mt19937_64& rng, CachegenCase& c) {
  c.chunk.resize(c.shape.Bytes());
  codec::FloatToElements(CachegenValues(rng, c.shape), c.shape.dtype, c.chunk);
  codec::EncodeOptions options;
  options.codec = codec::CodecId::kCacheGen;
  options.level = c.level;
  options.anchor_delta = c.anchor_delta;
  options.max_tokens_per_stream = c.tokens_per_stream;
  options.profile = c.profile.get();
  if (!codec::Encode(codec::KvView{c.CodecShape(), c.chunk, {}}, options, c.encoded).ok()) c.encoded.clear();
}

// A case with the given options and a random shape, tokens per stream and values; `encoded` is empty when
// the codec refused to encode (a test failure).
inline CachegenCase MakeCachegenCase(std::mt19937_64& rng, DType dtype, int level, bool anchor_delta,
                                     bool with_profile) {
  CachegenCase c;
  c.shape = RandomCachegenShape(rng, dtype);
  c.level = level;
  c.anchor_delta = anchor_delta;
  c.tokens_per_stream = RandomTokensPerStream(rng, c.shape.num_tokens);
  if (with_profile) c.profile = CachegenProfile(rng, c.shape);
  EncodeCachegenCase(rng, c);
  return c;
}

inline CachegenCase RandomCachegenCase(std::mt19937_64& rng) {
  constexpr DType kTypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};
  return MakeCachegenCase(rng, kTypes[rng() % 3], static_cast<int>(Pick(rng, 1, 3)), rng() % 2 == 0, rng() % 3 == 0);
}

}  // namespace kvtier::gpu::testing
