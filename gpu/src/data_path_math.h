// Arithmetic shared by the twins and the kernels of int8 dequantization and low-rank key reconstruction,
// compiled into both (C++20 host, C++17 CUDA) so both run the same correctly rounded operations in the same
// order. Header-only, stateless.
#pragma once

#include <cstdint>

#include "element_math.h"

namespace kvtier::gpu::detail {

// The int8 step of a row: scale / 127 in fp32, one rounding (codec/src/quant.cc DequantizeInt8).
KVTIER_HD float Int8Step(float scale) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(scale, 127.0f);
#else
  return scale / 127.0f;
#endif
}

// One dequantized value: q * step, -128 read as -127 (the codec's rule).
KVTIER_HD float Int8Value(int8_t q, float step) {
  const float fq = static_cast<float>(q < -127 ? -127 : q);
#ifdef __CUDA_ARCH__
  return __fmul_rn(fq, step);
#else
  return fq * step;
#endif
}

// Reads a little-endian fp32 at any alignment (int8 scales sit at 4-byte offsets of streams that need not
// start 4-byte aligned).
KVTIER_HD float LoadUnalignedFloat(const unsigned char* p) {
  const uint32_t bits = uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
  return BitsFloat(bits);
}

// Channel c of a low-rank key row: sum_j a_row[j] * b[j * channels + c] for j = 0..rank-1 in that order,
// one rounding per product and per sum.
KVTIER_HD float LowRankElement(const float* a_row, const float* b, uint32_t rank, uint64_t channels, uint64_t c) {
  float sum = 0.0f;
  for (uint32_t j = 0; j < rank; ++j) {
#ifdef __CUDA_ARCH__
    sum = __fadd_rn(sum, __fmul_rn(a_row[j], b[j * channels + c]));
#else
    sum = sum + a_row[j] * b[j * channels + c];
#endif
  }
  return sum;
}

}  // namespace kvtier::gpu::detail
