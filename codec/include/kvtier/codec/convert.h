// Element conversion between the stored KV types (fp16, bf16, fp32) and fp32 working values, as the
// codecs do it: round-to-nearest-even, F16C when the CPU has it. For callers that hold fp32 KV (a
// reference model, a test) and store fp16, or the reverse. Stateless and thread-safe.
#pragma once

#include <cstddef>
#include <span>

#include "kvtier/api/types.h"

namespace kvtier::codec {

// Reads values.size() elements of `dtype` from `src` (which holds exactly that many) into `values`.
void ElementsToFloat(std::span<const std::byte> src, DType dtype, std::span<float> values);
// Writes `values` as `dtype` elements into `dst` (exactly values.size() * DTypeBytes(dtype) bytes).
void FloatToElements(std::span<const float> values, DType dtype, std::span<std::byte> dst);

}  // namespace kvtier::codec
