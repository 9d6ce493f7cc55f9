// Random cases shared by the twin tests and the kernel tests of int8 dequantization, direct gather and
// low-rank keys: encoded int8 chunks (from the codec's real encoder), block arrays with selections, and
// low-rank factors with block selections.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kvtier/codec/codec.h"
#include "kvtier/codec/convert.h"
#include "kvtier/gpu/host_gather.h"
#include "kvtier/gpu/int8_dequant.h"
#include "kvtier/gpu/low_rank_keys.h"

namespace kvtier::gpu::testing {

using DataBytes = std::vector<std::byte>;

inline uint32_t Pick(std::mt19937_64& rng, uint32_t lo, uint32_t hi) {
  return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
}

inline std::string DescribeShape(const ChunkShape& s) {
  return "L" + std::to_string(s.num_layers) + " T" + std::to_string(s.num_tokens) + " H" +
         std::to_string(s.num_kv_heads) + " D" + std::to_string(s.head_dim) + " " + std::string(DTypeName(s.dtype));
}

// A random chunk of values ~ N(0, sigma) with a few outliers and, sometimes, an all-zero row (scale 0).
inline DataBytes RandomChunk(std::mt19937_64& rng, const ChunkShape& s) {
  const size_t n = s.Bytes() / DTypeBytes(s.dtype);
  const size_t row = size_t{s.num_kv_heads} * s.head_dim;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng) * 2.0f;
  for (int i = 0; i < 3; ++i) values[rng() % n] *= 50.0f;
  if (rng() % 2 == 0) {
    const size_t r = rng() % (n / row);
    for (size_t i = 0; i < row; ++i) values[r * row + i] = 0.0f;
  }
  DataBytes bytes(s.Bytes());
  codec::FloatToElements(values, s.dtype, bytes);
  return bytes;
}

inline ChunkShape RandomInt8Shape(std::mt19937_64& rng, DType dtype) {
  return ChunkShape{Pick(rng, 1, 4), Pick(rng, 1, 40), Pick(rng, 1, 4), Pick(rng, 1, 96), dtype};
}

// An int8 container of a random chunk, encoded by the codec.
inline DataBytes EncodeInt8(const ChunkShape& s, const DataBytes& chunk) {
  codec::KvView view{codec::KvShape{s.num_layers, s.num_kv_heads, s.head_dim, s.num_tokens, s.dtype}, chunk, {}};
  codec::EncodeOptions options;
  options.codec = codec::CodecId::kInt8;
  DataBytes encoded;
  const Status st = codec::Encode(view, options, encoded);
  if (!st.ok()) return {};
  return encoded;
}

struct GatherCase {
  uint32_t num_blocks = 0;
  uint64_t block_bytes = 0;
  std::vector<int32_t> ids;  // with repeats
  std::string Describe() const {
    return std::to_string(num_blocks) + " blocks x " + std::to_string(block_bytes) + " bytes, " +
           std::to_string(ids.size()) + " selected";
  }
};

inline GatherCase RandomGatherCase(std::mt19937_64& rng) {
  GatherCase c;
  c.num_blocks = Pick(rng, 1, 64);
  const uint64_t sizes[] = {Pick(rng, 1, 33), 16 * uint64_t{Pick(rng, 1, 256)}, 4 * uint64_t{Pick(rng, 1, 300)},
                            8 * uint64_t{Pick(rng, 1, 100)} + 2};
  c.block_bytes = sizes[rng() % 4];
  c.ids.resize(Pick(rng, 1, 48));
  for (int32_t& id : c.ids) id = static_cast<int32_t>(rng() % c.num_blocks);
  return c;
}

// Independent reference: byte by byte.
inline DataBytes NaiveGather(const std::byte* source, const GatherCase& c) {
  DataBytes out(c.ids.size() * c.block_bytes);
  for (size_t i = 0; i < c.ids.size(); ++i) {
    for (uint64_t b = 0; b < c.block_bytes; ++b) out[i * c.block_bytes + b] = source[c.ids[i] * c.block_bytes + b];
  }
  return out;
}

struct LowRankCase {
  LowRankShape shape;
  std::vector<float> a, b;
  std::vector<int32_t> ids;
  uint32_t block_size = 0;
  int64_t first_position = 0;
  RopeParams rope;

  LowRankKeysView View() const { return LowRankKeysView{shape, a.data(), b.data()}; }
  KeyBlockSelection Selection(const int32_t* block_ids) const {
    return KeyBlockSelection{block_ids, static_cast<uint32_t>(ids.size()), block_size, first_position};
  }
  std::string Describe() const {
    return "L" + std::to_string(shape.num_layers) + " T" + std::to_string(shape.num_tokens) + " H" +
           std::to_string(shape.num_kv_heads) + " D" + std::to_string(shape.head_dim) + " r" +
           std::to_string(shape.rank) + " bs" + std::to_string(block_size) + " sel" + std::to_string(ids.size()) +
           (rope.style == RopeStyle::kNeox ? " neox" : " gptj") + " rot" + std::to_string(rope.rotary_dim) +
           " pos" + std::to_string(first_position);
  }
};

// Random factors (values ~ N(0, 1/sqrt(rank)) so keys are O(1)), a selection that includes the last
// (possibly partial) block and repeats, and random RoPE parameters.
inline LowRankCase RandomLowRankCase(std::mt19937_64& rng, uint32_t max_rotary = 256) {
  LowRankCase c;
  LowRankShape& s = c.shape;
  s.num_layers = Pick(rng, 1, 3);
  s.num_tokens = Pick(rng, 1, 70);
  s.num_kv_heads = Pick(rng, 1, 4);
  s.head_dim = 2 * Pick(rng, 2, 64);
  s.rank = Pick(rng, 1, std::min<uint32_t>(24, std::min<uint64_t>(s.num_tokens, s.Channels())));
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(s.rank)));
  c.a.resize(s.AFloats());
  c.b.resize(s.BFloats());
  for (float& v : c.a) v = normal(rng);
  for (float& v : c.b) v = normal(rng);
  c.block_size = Pick(rng, 1, 16);
  const uint32_t blocks = (s.num_tokens + c.block_size - 1) / c.block_size;
  c.ids.resize(Pick(rng, 1, 6));
  for (int32_t& id : c.ids) id = static_cast<int32_t>(rng() % blocks);
  c.ids.push_back(static_cast<int32_t>(blocks - 1));
  c.first_position = rng() % 3 == 0 ? 0 : Pick(rng, 0, 200000);
  c.rope.style = rng() % 2 == 0 ? RopeStyle::kNeox : RopeStyle::kGptj;
  const uint32_t max_pairs = std::min(s.head_dim, max_rotary) / 2;
  c.rope.rotary_dim = rng() % 2 == 0 ? 2 * max_pairs : 2 * Pick(rng, 1, max_pairs);
  c.rope.theta = rng() % 2 == 0 ? 10000.0 : 500000.0;
  return c;
}

}  // namespace kvtier::gpu::testing
