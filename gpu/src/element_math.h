// Element conversion and the RoPE pair rotation, compiled into both the CPU twins (C++20) and the CUDA
// kernels (C++17), so twin and kernel run the same instructions on the same inputs. The conversions are
// the codec's (codec/src/float_convert.cc): round-to-nearest-even, NaN kept quiet with its payload, so the
// twins also equal client/src/rope.cc bit for bit. The rotation uses round-to-nearest products and sums
// without fused multiply-add (explicit intrinsics on the device, -ffp-contract=off on the host files), in
// the order rope.cc writes it. Header-only, stateless.
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define KVTIER_HD __host__ __device__ __forceinline__
#else
#define KVTIER_HD inline
#endif

namespace kvtier::gpu::detail {

// Element type codes shared with the kernels; values equal kvtier::DType.
enum ElementType : uint8_t { kElemFp16 = 1, kElemBf16 = 2, kElemFp32 = 3 };

KVTIER_HD uint32_t FloatBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

KVTIER_HD float BitsFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

KVTIER_HD float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf / NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3ffu;
    bits = sign | (uint32_t(113 - shift) << 23) | (mantissa << 13);
  }
  return BitsFloat(bits);
}

KVTIER_HD uint16_t FloatToHalf(float f) {
  const uint32_t bits = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) {
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u | ((abs >> 13) & 0x3ffu) : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (abs < 0x38800000u) {
    if (abs < 0x33000000u) return sign;
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (abs - 0x38000000u) >> 13;
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

KVTIER_HD float Bf16ToFloat(uint16_t b) { return BitsFloat(uint32_t{b} << 16); }

KVTIER_HD uint16_t FloatToBf16(float f) {
  const uint32_t bits = FloatBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// One correctly rounded fp32 operation each, never fused with a neighbour (the device spells it with
// intrinsics; host files that use these are compiled with -ffp-contract=off).
KVTIER_HD float MulRn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

KVTIER_HD float AddRn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

KVTIER_HD float DivRn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// Element `i` of a row of `type` elements, as float.
KVTIER_HD float LoadElement(const unsigned char* row, uint32_t i, uint8_t type) {
  if (type == kElemFp32) {
    float f;
#ifdef __CUDA_ARCH__
    f = reinterpret_cast<const float*>(row)[i];
#else
    std::memcpy(&f, row + 4 * size_t{i}, 4);
#endif
    return f;
  }
  uint16_t h;
#ifdef __CUDA_ARCH__
  h = reinterpret_cast<const uint16_t*>(row)[i];
#else
  std::memcpy(&h, row + 2 * size_t{i}, 2);
#endif
  return type == kElemFp16 ? HalfToFloat(h) : Bf16ToFloat(h);
}

KVTIER_HD void StoreElement(unsigned char* row, uint32_t i, uint8_t type, float value) {
  if (type == kElemFp32) {
#ifdef __CUDA_ARCH__
    reinterpret_cast<float*>(row)[i] = value;
#else
    std::memcpy(row + 4 * size_t{i}, &value, 4);
#endif
    return;
  }
  const uint16_t h = type == kElemFp16 ? FloatToHalf(value) : FloatToBf16(value);
#ifdef __CUDA_ARCH__
  reinterpret_cast<uint16_t*>(row)[i] = h;
#else
  std::memcpy(row + 2 * size_t{i}, &h, 2);
#endif
}

KVTIER_HD void CopyElement(const unsigned char* src, unsigned char* dst, uint32_t i, uint32_t elem_bytes) {
  if (elem_bytes == 4) {
#ifdef __CUDA_ARCH__
    reinterpret_cast<uint32_t*>(dst)[i] = reinterpret_cast<const uint32_t*>(src)[i];
#else
    std::memcpy(dst + 4 * size_t{i}, src + 4 * size_t{i}, 4);
#endif
  } else {
#ifdef __CUDA_ARCH__
    reinterpret_cast<uint16_t*>(dst)[i] = reinterpret_cast<const uint16_t*>(src)[i];
#else
    std::memcpy(dst + 2 * size_t{i}, src + 2 * size_t{i}, 2);
#endif
  }
}

// Rotates the pair (x, y) by the angle whose cosine and sine are (c, s):
// x' = x*c - y*s, y' = x*s + y*c, each product and sum rounded once (no FMA), as rope.cc computes it.
KVTIER_HD void RotatePair(float x, float y, float c, float s, float* out_x, float* out_y) {
#ifdef __CUDA_ARCH__
  *out_x = __fsub_rn(__fmul_rn(x, c), __fmul_rn(y, s));
  *out_y = __fadd_rn(__fmul_rn(x, s), __fmul_rn(y, c));
#else
  *out_x = x * c - y * s;
  *out_y = x * s + y * c;
#endif
}

// Dims of rotary pair `pair` in a head: NeoX pairs (i, i + rotary/2), GPT-J pairs (2i, 2i+1).
KVTIER_HD void PairDims(bool neox, uint32_t rotary_dim, uint32_t pair, uint32_t* a, uint32_t* b) {
  *a = neox ? pair : 2 * pair;
  *b = neox ? pair + rotary_dim / 2 : 2 * pair + 1;
}

// Writes head `src_head` (head_dim elements) rotated into `dst_head` (which may equal src_head): the
// rotary pairs turned by (cos_table[i], sin_table[i]), the dims past rotary_dim copied bit for bit.
// Work item `item` in [0, head_dim - rotary_dim/2) is one pair (item < rotary_dim/2) or one copied dim.
KVTIER_HD void RotateHeadItem(const unsigned char* src_head, unsigned char* dst_head, uint32_t item, uint8_t type,
                              uint32_t elem_bytes, bool neox, uint32_t rotary_dim, const float* cos_table,
                              const float* sin_table) {
  const uint32_t pairs = rotary_dim / 2;
  if (item >= pairs) {
    const uint32_t dim = item + pairs;  // rotary_dim + (item - pairs)
    if (src_head != dst_head) CopyElement(src_head, dst_head, dim, elem_bytes);
    return;
  }
  uint32_t a, b;
  PairDims(neox, rotary_dim, item, &a, &b);
  const float x = LoadElement(src_head, a, type);
  const float y = LoadElement(src_head, b, type);
  float rx, ry;
  RotatePair(x, y, cos_table[item], sin_table[item], &rx, &ry);
  StoreElement(dst_head, a, type, rx);
  StoreElement(dst_head, b, type, ry);
}

}  // namespace kvtier::gpu::detail
