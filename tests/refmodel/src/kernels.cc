#include "kernels.h"

#include <cmath>
#include <cstring>

namespace kvtier::refmodel {
namespace {

// GCC/Clang vector extension: four floats in one SSE/NEON register; arithmetic is lane-wise IEEE.
using V4 = float __attribute__((vector_size(16)));

V4 Load(const float* p) {
  V4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// N dot products of `w` with N vectors at once, so w is loaded once and the 2N accumulators hide the
// latency of the adds. Lanes 0-3 live in lo, 4-7 in hi. The loops over r are unrolled so the
// accumulators stay in registers (-O2 would otherwise keep the arrays on the stack).
template <int N>
void DotBlock(const float* w, const float* x, size_t x_stride, int n, float* out, size_t out_stride) {
  V4 lo[N], hi[N];
#pragma GCC unroll 8
  for (int r = 0; r < N; ++r) lo[r] = hi[r] = V4{0, 0, 0, 0};
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    const V4 wl = Load(w + j), wh = Load(w + j + 4);
#pragma GCC unroll 8
    for (int r = 0; r < N; ++r) {
      lo[r] += wl * Load(x + r * x_stride + j);
      hi[r] += wh * Load(x + r * x_stride + j + 4);
    }
  }
  for (int lane = 0; j < n; ++j, ++lane) {
#pragma GCC unroll 8
    for (int r = 0; r < N; ++r) {
      const float term = w[j] * x[r * x_stride + j];
      if (lane < 4) lo[r][lane] += term;
      else hi[r][lane - 4] += term;
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < N; ++r) {
    const V4 s = lo[r] + hi[r];
    out[r * out_stride] = (s[0] + s[1]) + (s[2] + s[3]);
  }
}

}  // namespace

float Dot(const float* a, const float* b, int n) {
  float out;
  DotBlock<1>(a, b, 0, n, &out, 0);
  return out;
}

void DotMany(const float* w, const float* x, size_t x_stride, int n, int rows, float* out, size_t out_stride) {
  constexpr int kGroup = 4;
  int r = 0;
  for (; r + kGroup <= rows; r += kGroup) {
    DotBlock<kGroup>(w, x + r * x_stride, x_stride, n, out + r * out_stride, out_stride);
  }
  for (; r < rows; ++r) DotBlock<1>(w, x + r * x_stride, 0, n, out + r * out_stride, 0);
}

void MatMul(float* out, const float* x, const float* w, int n, int d, int rows) {
  for (int i = 0; i < d; ++i) DotMany(w + size_t(i) * n, x, size_t(n), n, rows, out + i, size_t(d));
}

void RmsNorm(float* out, const float* x, const float* weight, int size, float eps) {
  float ss = 0.0f;
  for (int j = 0; j < size; ++j) ss += x[j] * x[j];
  const float inv = 1.0f / std::sqrt(ss / float(size) + eps);
  for (int j = 0; j < size; ++j) out[j] = weight[j] * (inv * x[j]);
}

void ScaledSoftmax(float* x, int size, float scale) {
  float max = x[0] * scale;
  for (int i = 0; i < size; ++i) {
    x[i] *= scale;
    max = x[i] > max ? x[i] : max;
  }
  float sum = 0.0f;
  for (int i = 0; i < size; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  // Lane-wise division is exactly the scalar division, four at a time.
  int i = 0;
  const V4 sums = {sum, sum, sum, sum};
  for (; i + 4 <= size; i += 4) {
    const V4 q = Load(x + i) / sums;
    std::memcpy(x + i, &q, sizeof(q));
  }
  for (; i < size; ++i) x[i] /= sum;
}

void WeightedSum(const float* weights, const float* rows, size_t stride, int count, int n, float* out) {
  int i = 0;
  // Columns four at a time: each lane still adds its terms in order of t.
  for (; i + 4 <= n; i += 4) {
    V4 acc = {0, 0, 0, 0};
    for (int t = 0; t < count; ++t) acc += weights[t] * Load(rows + t * stride + i);
    std::memcpy(out + i, &acc, sizeof(acc));
  }
  for (; i < n; ++i) {
    float acc = 0.0f;
    for (int t = 0; t < count; ++t) acc += weights[t] * rows[t * stride + i];
    out[i] = acc;
  }
}

}  // namespace kvtier::refmodel
