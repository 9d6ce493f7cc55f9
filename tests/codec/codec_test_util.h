// Helpers shared by the codec tests: KV-like test tensors, per-element error bounds of the lossy
// codecs (FORMAT.md), and an output buffer with guard bytes on both sides.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "float_convert.h"
#include "kvtier/codec/codec.h"

namespace kvtier::codec::testing {

inline KvShape Shape(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens, DType dtype) {
  return KvShape{layers, heads, dim, tokens, dtype};
}

// Smooth values like real KV: a per-channel offset, a slow drift over tokens, a little noise, and a
// few outlier key channels an order of magnitude larger.
inline std::vector<float> MakeValues(const KvShape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const uint64_t C = uint64_t{s.num_kv_heads} * s.head_dim;
  std::vector<float> v(s.NumValues());
  std::vector<float> base(C), freq(C), amp(C);
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      for (uint64_t c = 0; c < C; ++c) {
        base[c] = 0.5f * normal(rng);
        freq[c] = 0.05f + 0.2f * std::fabs(normal(rng));
        amp[c] = (kv == 0 && c % 37 == 5) ? 8.0f : 0.6f;
      }
      for (uint32_t t = 0; t < s.num_tokens; ++t) {
        float* row = v.data() + ((uint64_t{l} * 2 + kv) * s.num_tokens + t) * C;
        for (uint64_t c = 0; c < C; ++c) {
          row[c] = base[c] + amp[c] * std::sin(freq[c] * t + float(c)) + 0.15f * normal(rng);
        }
      }
    }
  }
  return v;
}

struct TestKv {
  KvShape shape;
  std::vector<float> values;      // exactly the stored values, as floats
  std::vector<std::byte> bytes;   // canonical layout in shape.dtype
  KvView View() const { return KvView{shape, bytes, {}}; }
};

inline TestKv MakeKv(const KvShape& s, uint32_t seed = 1) {
  TestKv kv{s, MakeValues(s, seed), {}};
  kv.bytes.resize(s.RawBytes());
  internal::FromFloat(kv.values.data(), kv.values.size(), s.dtype, kv.bytes.data());
  internal::ToFloat(kv.bytes.data(), s.dtype, kv.values.size(), kv.values.data());
  return kv;
}

inline std::vector<float> AsFloats(const KvShape& s, std::span<const std::byte> bytes) {
  std::vector<float> out(s.NumValues());
  internal::ToFloat(bytes.data(), s.dtype, out.size(), out.data());
  return out;
}

// Worst rounding of writing a value of magnitude <= v in dtype.
inline double OutputRounding(DType dtype, double v) {
  switch (dtype) {
    case DType::kFp16: return std::max(v * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
    case DType::kBf16: return v * std::ldexp(1.0, -8) + 1e-38;
    default: return v * std::ldexp(1.0, -24) + 1e-45;
  }
}

// Spacing of fp16 values near v.
inline double HalfUlp(double v) {
  v = std::fabs(v);
  if (v < std::ldexp(1.0, -14)) return std::ldexp(1.0, -24);
  return std::ldexp(1.0, std::ilogb(v) - 10);
}

// int8 bound before output rounding: scale / 254, scale = the row's absmax.
inline double Int8Bound(double absmax) { return absmax / 254.0 * (1 + 1e-5) + 1e-30; }

// Asymmetric b-bit bound before output rounding: scale_h / 2, where the fp16 zero sits at most one
// fp16 step below min and scale_h = (max - zero) / qmax rounded up to fp16.
inline double AsymBound(double min, double max, int qmax) {
  const double scale = (max - min + HalfUlp(min)) / qmax;
  const double scale_h = scale * (1 + std::ldexp(1.0, -9)) + std::ldexp(1.0, -23);
  return scale_h / 2 + 1e-6 * (std::fabs(min) + std::fabs(max));
}

// Output buffer of exactly n bytes between two guard zones; Intact() checks nothing touched them.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t n) : storage_(n + 2 * kGuard, std::byte{0xA5}), n_(n) {}
  std::span<std::byte> span() { return {storage_.data() + kGuard, n_}; }
  bool Intact() const {
    for (size_t i = 0; i < kGuard; ++i) {
      if (storage_[i] != std::byte{0xA5} || storage_[kGuard + n_ + i] != std::byte{0xA5}) return false;
    }
    return true;
  }

 private:
  static constexpr size_t kGuard = 64;
  std::vector<std::byte> storage_;
  size_t n_;
};

}  // namespace kvtier::codec::testing
