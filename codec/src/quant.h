// Row-level quantization shared by the int8, kivi2 and mixed codecs (FORMAT.md states the formulas
// and bounds). Work is in fp32 on rows a codec has converted with ToFloat; nothing here allocates.
// Stateless and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/codec/codec.h"

namespace kvtier::codec::internal {

inline constexpr float kMaxHalf = 65504.0f;

// Largest |x| of the row, and whether every value is finite.
struct RowStats {
  float absmax = 0.0f;
  float min = 0.0f;
  float max = 0.0f;
  bool finite = true;
};
RowStats ScanRow(const float* x, size_t n);

// INVALID_ARGUMENT naming where a non-finite (or, for fp16 parameters, out-of-range) value sits.
Status NonFiniteError(std::string_view codec, uint32_t layer, int kv, uint32_t token);
Status OutOfHalfRangeError(std::string_view codec, uint32_t layer, int kv, uint32_t token);

// int8 symmetric: scale = absmax, q = round(x * (127 / scale)) to nearest, ties to even;
// x' = q * (scale / 127).
void QuantizeInt8(const float* x, size_t n, float absmax, int8_t* q);
void DequantizeInt8(const int8_t* q, size_t n, float scale, float* x);

// Asymmetric b-bit with fp16 parameters. zero = the largest fp16 <= min; scale = the smallest fp16
// with zero + qmax * scale >= max. Then every x in [min, max] quantizes within scale / 2.
// Requires finite min <= max inside the fp16 range.
struct AsymParams {
  uint16_t scale_h = 0;
  uint16_t zero_h = 0;
};
AsymParams ChooseAsym(float min, float max, int qmax);
// q = clamp(round((x - zero) / scale), 0, qmax), rounding to nearest with ties to even, with the
// parameters as floats: one (zero, inv_scale) for the row, or one per element (keys per channel).
void QuantizeAsym(const float* x, size_t n, float zero, float inv_scale, int qmax, uint8_t* q);
void QuantizeAsymPerElement(const float* x, const float* zero, const float* inv_scale, size_t n, int qmax, uint8_t* q);
inline float InverseScale(float scale) { return scale > 0.0f ? 1.0f / scale : 0.0f; }
// The grid point nearest a value near +-65504 may lie just beyond the fp16 range; decoders of fp16
// chunks clamp reconstructed rows so they never turn into infinities.
void ClampToHalfRange(float* x, size_t n);
// True when an fp16 scale / zero pair read from a container is usable (finite, scale >= 0).
bool ValidAsym(uint16_t scale_h, uint16_t zero_h);

// Little-endian bit packing of n codes of `bits` bits each (LSB first), into PackedBytes(n, bits).
inline size_t PackedBytes(uint64_t n, int bits) { return static_cast<size_t>((n * bits + 7) / 8); }
void PackBits(const uint8_t* codes, size_t n, int bits, std::byte* out);
void UnpackBits(const std::byte* in, size_t n, int bits, uint8_t* codes);

// Little-endian loads and stores at any alignment.
template <typename T>
inline T Load(const std::byte* p) {
  T v;
  __builtin_memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
inline void Store(std::byte* p, T v) {
  __builtin_memcpy(p, &v, sizeof(T));
}

// Runs fn(i) for i in [0, n) on the executor (inline when null) and returns the first failure by index.
Status RunParallel(Executor* executor, size_t n, const std::function<Status(size_t)>& fn);

}  // namespace kvtier::codec::internal
