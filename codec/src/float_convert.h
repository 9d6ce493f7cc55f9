// Bulk conversion between the stored element types (fp16, bf16, fp32) and fp32 working values.
// Quantizing codecs read a token row into floats, work in fp32, and write the row back in the
// container's dtype. Rounding is round-to-nearest-even in both directions, so fp16 -> fp32 -> fp16
// is the identity (NaN payloads aside). Uses F16C when the CPU has it, portable code otherwise.
// Stateless and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvtier/api/types.h"

namespace kvtier::codec::internal {

float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
float Bf16ToFloat(uint16_t b);
uint16_t FloatToBf16(float f);

// Reads n elements of `dtype` starting at src (any alignment) into dst.
void ToFloat(const std::byte* src, DType dtype, size_t n, float* dst);
// Writes n floats as `dtype` elements to dst (any alignment).
void FromFloat(const float* src, size_t n, DType dtype, std::byte* dst);

}  // namespace kvtier::codec::internal
