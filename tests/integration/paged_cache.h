// A vLLM-style paged KV cache in host memory for transfer tests: per layer K and V buffers of
// [num_blocks, block_size, kv_heads, head_dim], a shuffled block table, random contents or a poison byte.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kvtier/gpu/paged_kv.h"

namespace kvtier::testing {

struct HostPagedCache {
  gpu::PagedKvShape shape;
  std::vector<std::vector<std::byte>> k, v;  // per layer
  std::vector<void*> k_ptrs, v_ptrs;
  std::vector<int32_t> block_table;          // every block, in a shuffled order

  HostPagedCache(const gpu::PagedKvShape& s, uint32_t seed) : shape(s) {
    std::mt19937 rng(seed);
    for (uint32_t l = 0; l < s.num_layers; ++l) {
      k.emplace_back(s.LayerBytes());
      v.emplace_back(s.LayerBytes());
    }
    for (uint32_t l = 0; l < s.num_layers; ++l) {
      k_ptrs.push_back(k[l].data());
      v_ptrs.push_back(v[l].data());
    }
    block_table.resize(s.num_blocks);
    std::iota(block_table.begin(), block_table.end(), 0);
    std::shuffle(block_table.begin(), block_table.end(), rng);
  }

  // Random finite fp16 values (exponent field never all ones), so re-rotation never meets NaN.
  void FillRandom(uint32_t seed) {
    std::mt19937 rng(seed);
    for (auto* layers : {&k, &v}) {
      for (auto& buf : *layers) {
        for (size_t i = 0; i + 1 < buf.size(); i += 2) {
          const uint16_t h = static_cast<uint16_t>(rng() & 0xbbff);  // |x| < 2, sign random
          std::memcpy(&buf[i], &h, 2);
        }
      }
    }
  }
  void Poison(uint8_t value) {
    for (auto* layers : {&k, &v}) {
      for (auto& buf : *layers) std::fill(buf.begin(), buf.end(), std::byte{value});
    }
  }

  gpu::PagedKvCache View() const { return {shape, k_ptrs, v_ptrs}; }

  // The bytes of token position `pos` of layer `layer`'s K (kv = 0) or V (kv = 1).
  const std::byte* Row(uint32_t layer, int kv, uint32_t pos) const {
    const uint64_t block = static_cast<uint64_t>(block_table[pos / shape.block_size]);
    const auto& buf = kv == 0 ? k[layer] : v[layer];
    return buf.data() + (block * shape.block_size + pos % shape.block_size) * shape.RowBytes();
  }
};

}  // namespace kvtier::testing
