// Random paged-cache cases shared by the twin tests and the kernel tests: shapes, block tables that are
// permutations (non-contiguous), partial first and last blocks, first_token off block boundaries, and a
// naive per-element pack written independently of the library.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kvtier/codec/convert.h"
#include "kvtier/gpu/paged_kv.h"

namespace kvtier::gpu::testing {

using Bytes = std::vector<std::byte>;

struct PagedCase {
  PagedKvShape shape;
  std::vector<int32_t> table;
  uint32_t first_token = 0;
  uint32_t num_tokens = 0;

  SequenceSlice Slice() const {
    return SequenceSlice{table.data(), static_cast<uint32_t>(table.size()), first_token, num_tokens};
  }
  SequenceSlice SliceWith(const int32_t* device_table) const {
    return SequenceSlice{device_table, static_cast<uint32_t>(table.size()), first_token, num_tokens};
  }
  std::string Describe() const {
    return "L" + std::to_string(shape.num_layers) + " H" + std::to_string(shape.num_kv_heads) + " D" +
           std::to_string(shape.head_dim) + " " + std::string(DTypeName(shape.dtype)) + " blocks " +
           std::to_string(shape.num_blocks) + "x" + std::to_string(shape.block_size) + " tokens [" +
           std::to_string(first_token) + ", +" + std::to_string(num_tokens) + ")";
  }
};

inline uint32_t Uniform(std::mt19937_64& rng, uint32_t lo, uint32_t hi) {
  return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
}

// `even_head_dim` for cases that rotate (rotary pairs need an even head_dim when rotary_dim == head_dim).
inline PagedCase RandomCase(std::mt19937_64& rng, DType dtype, bool even_head_dim = false, uint32_t max_layers = 4) {
  PagedCase c;
  c.shape.num_layers = Uniform(rng, 1, max_layers);
  c.shape.num_kv_heads = Uniform(rng, 1, 4);
  c.shape.head_dim = Uniform(rng, 8, 128);
  if (even_head_dim) c.shape.head_dim &= ~1u;
  c.shape.block_size = Uniform(rng, 1, 32);
  c.shape.dtype = dtype;
  c.first_token = Uniform(rng, 0, 3 * c.shape.block_size + 2);
  c.num_tokens = Uniform(rng, 1, 70);
  const uint32_t end = c.first_token + c.num_tokens;
  const uint32_t needed = (end + c.shape.block_size - 1) / c.shape.block_size;
  c.shape.num_blocks = needed + Uniform(rng, 0, 8);
  std::vector<int32_t> ids(c.shape.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  c.table.assign(ids.begin(), ids.begin() + needed + Uniform(rng, 0, c.shape.num_blocks - needed));
  return c;
}

inline Bytes RandomBytes(std::mt19937_64& rng, size_t n) {
  Bytes out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() & 0xff);
  return out;
}

// `bytes` of finite `dtype` values in [-4, 4) (random bytes would include NaN and inf, whose payloads a
// rotation need not keep).
inline Bytes RandomValues(std::mt19937_64& rng, DType dtype, size_t bytes) {
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> values(bytes / DTypeBytes(dtype));
  for (float& v : values) v = dist(rng);
  Bytes out(bytes);
  codec::FloatToElements(values, dtype, out);
  return out;
}

// A host paged cache that owns its layers.
struct HostCache {
  PagedKvShape shape;
  std::vector<Bytes> k, v;
  std::vector<void*> k_ptrs, v_ptrs;

  HostCache(const PagedKvShape& s, std::byte fill) : shape(s) {
    for (uint32_t l = 0; l < s.num_layers; ++l) {
      k.emplace_back(s.LayerBytes(), fill);
      v.emplace_back(s.LayerBytes(), fill);
    }
    Point();
  }
  // Copies point at their own layers.
  HostCache(const HostCache& other) : shape(other.shape), k(other.k), v(other.v) { Point(); }
  HostCache& operator=(const HostCache&) = delete;

  void Point() {
    k_ptrs.clear();
    v_ptrs.clear();
    for (uint32_t l = 0; l < shape.num_layers; ++l) {
      k_ptrs.push_back(k[l].data());
      v_ptrs.push_back(v[l].data());
    }
  }
  void Randomize(std::mt19937_64& rng) {
    for (auto* layers : {&k, &v}) {
      for (auto& layer : *layers) {
        for (auto& b : layer) b = static_cast<std::byte>(rng() & 0xff);  // in place: k_ptrs/v_ptrs stay valid
      }
    }
  }
  PagedKvCache View() const { return PagedKvCache{shape, k_ptrs, v_ptrs}; }
  friend bool operator==(const HostCache& a, const HostCache& b) { return a.k == b.k && a.v == b.v; }
};

// Element by element, from the layout definitions alone.
inline Bytes NaivePack(const HostCache& cache, const PagedCase& c) {
  const PagedKvShape& s = c.shape;
  const size_t elem = DTypeBytes(s.dtype);
  Bytes out(s.ChunkBytes(c.num_tokens));
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < c.num_tokens; ++t) {
        const uint32_t pos = c.first_token + t;
        const size_t block = static_cast<size_t>(c.table[pos / s.block_size]);
        const size_t slot = pos % s.block_size;
        for (uint32_t h = 0; h < s.num_kv_heads; ++h) {
          for (uint32_t d = 0; d < s.head_dim; ++d) {
            const size_t src = ((block * s.block_size + slot) * s.num_kv_heads + h) * s.head_dim + d;
            const size_t dst = (((size_t{l} * 2 + kv) * c.num_tokens + t) * s.num_kv_heads + h) * s.head_dim + d;
            const Bytes& layer = kv == 0 ? cache.k[l] : cache.v[l];
            std::memcpy(out.data() + dst * elem, layer.data() + src * elem, elem);
          }
        }
      }
    }
  }
  return out;
}

}  // namespace kvtier::gpu::testing
