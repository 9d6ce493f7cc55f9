// The forward pass's numeric kernels (private).
//
// Every dot product, whatever kernel computes it, adds its terms in one fixed order: eight lanes
// (term j goes to lane j % 8), then the lanes pairwise. So a token's results do not depend on how many
// tokens are computed together, and Forward one token at a time equals ForwardMany bit for bit. The
// lanes are also what lets the compiler use SIMD without -ffast-math.
#pragma once

#include <cstddef>

namespace kvtier::refmodel {

// sum_j a[j] * b[j] in the fixed order above.
float Dot(const float* a, const float* b, int n);
// out[r * out_stride] = Dot(w, x + r * x_stride, n) for r < rows: one vector against many.
void DotMany(const float* w, const float* x, size_t x_stride, int n, int rows, float* out, size_t out_stride);
// out[r * d + i] = Dot(w + i * n, x + r * n, n): `rows` input vectors of n through W [d][n], row-major.
void MatMul(float* out, const float* x, const float* w, int n, int d, int rows);
// out = weight * x / sqrt(mean(x^2) + eps). out may alias x.
void RmsNorm(float* out, const float* x, const float* weight, int size, float eps);
// x = softmax(x * scale) in place, numerically stable (subtracts the max).
void ScaledSoftmax(float* x, int size, float scale);
// out[i] = sum over t < count of weights[t] * rows[t * stride + i], for i < n, adding in order of t.
void WeightedSum(const float* weights, const float* rows, size_t stride, int count, int n, float* out);

}  // namespace kvtier::refmodel
