#include "quant.h"

#include <emmintrin.h>

#include <cmath>

#include "float_convert.h"

namespace kvtier::codec::internal {
namespace {

uint16_t HalfStepDown(uint16_t h) {
  if (h == 0x0000) return 0x8001;
  return (h & 0x8000u) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h - 1);
}

uint16_t HalfStepUp(uint16_t h) {
  if (h == 0x8000) return 0x0001;
  return (h & 0x8000u) ? static_cast<uint16_t>(h - 1) : static_cast<uint16_t>(h + 1);
}

uint16_t HalfAtOrBelow(float v) {
  uint16_t h = FloatToHalf(v);
  if (HalfToFloat(h) > v) h = HalfStepDown(h);
  return h;
}

uint16_t HalfAtOrAbove(float v) {
  uint16_t h = FloatToHalf(v);
  if (HalfToFloat(h) < v) h = HalfStepUp(h);
  return h;
}

const char* KvName(int kv) { return kv == 0 ? "K" : "V"; }

}  // namespace

RowStats ScanRow(const float* x, size_t n) {
  RowStats st;
  if (n == 0) return st;
  __m128 mn = _mm_set1_ps(x[0]);
  __m128 mx = mn;
  __m128 bad = _mm_setzero_ps();  // x - x is 0 for finite x and NaN otherwise
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m128 v = _mm_loadu_ps(x + i);
    mn = _mm_min_ps(mn, v);
    mx = _mm_max_ps(mx, v);
    bad = _mm_add_ps(bad, _mm_sub_ps(v, v));
  }
  alignas(16) float a[4], b[4], c[4];
  _mm_store_ps(a, mn);
  _mm_store_ps(b, mx);
  _mm_store_ps(c, bad);
  float lo = a[0], hi = b[0], nonfinite = c[0] + c[1] + c[2] + c[3];
  for (int k = 1; k < 4; ++k) {
    lo = a[k] < lo ? a[k] : lo;
    hi = b[k] > hi ? b[k] : hi;
  }
  for (; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
    nonfinite += x[i] - x[i];
  }
  st.finite = nonfinite == 0.0f;
  st.min = lo;
  st.max = hi;
  st.absmax = std::fabs(lo) > std::fabs(hi) ? std::fabs(lo) : std::fabs(hi);
  return st;
}

Status NonFiniteError(std::string_view codec, uint32_t layer, int kv, uint32_t token) {
  return InvalidArgument(std::string(codec) + ": non-finite value (NaN or Inf) at layer " + std::to_string(layer) +
                         " " + KvName(kv) + " token " + std::to_string(token) + "; lossy codecs need finite input");
}

Status OutOfHalfRangeError(std::string_view codec, uint32_t layer, int kv, uint32_t token) {
  return InvalidArgument(std::string(codec) + ": value beyond the fp16 range (|x| > 65504) at layer " +
                         std::to_string(layer) + " " + KvName(kv) + " token " + std::to_string(token) +
                         "; its fp16 scale and zero point cannot represent it");
}

// The SSE loops below convert with cvtps2dq, which rounds to nearest-even under the default MXCSR
// mode; the scalar tails use lrintf, which rounds the same way.
void QuantizeInt8(const float* x, size_t n, float absmax, int8_t* q) {
  const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
  const __m128 vinv = _mm_set1_ps(inv), lo = _mm_set1_ps(-127.0f), hi = _mm_set1_ps(127.0f);
  auto quant4 = [&](const float* p) {
    return _mm_cvtps_epi32(_mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(p), vinv), lo), hi));
  };
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_packs_epi32(quant4(x + i), quant4(x + i + 4));
    const __m128i b = _mm_packs_epi32(quant4(x + i + 8), quant4(x + i + 12));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(a, b));
  }
  for (; i < n; ++i) {
    float t = x[i] * inv;
    t = t < -127.0f ? -127.0f : (t > 127.0f ? 127.0f : t);
    q[i] = static_cast<int8_t>(std::lrintf(t));
  }
}

namespace {
inline uint8_t QuantizeAsymOne(float x, float zero, float inv, float qmax) {
  float t = (x - zero) * inv;
  t = t < 0.0f ? 0.0f : (t > qmax ? qmax : t);
  return static_cast<uint8_t>(std::lrintf(t));
}
// 16 codes from 16 clamped floats.
inline void Store16(__m128i a, __m128i b, __m128i c, __m128i d, uint8_t* q) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d)));
}
}  // namespace

void QuantizeAsym(const float* x, size_t n, float zero, float inv_scale, int qmax, uint8_t* q) {
  const float fmax = static_cast<float>(qmax);
  const __m128 vz = _mm_set1_ps(zero), vi = _mm_set1_ps(inv_scale), lo = _mm_setzero_ps(), hi = _mm_set1_ps(fmax);
  auto quant4 = [&](const float* p) {
    return _mm_cvtps_epi32(_mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(p), vz), vi), lo), hi));
  };
  size_t i = 0;
  for (; i + 16 <= n; i += 16) Store16(quant4(x + i), quant4(x + i + 4), quant4(x + i + 8), quant4(x + i + 12), q + i);
  for (; i < n; ++i) q[i] = QuantizeAsymOne(x[i], zero, inv_scale, fmax);
}

void QuantizeAsymPerElement(const float* x, const float* zero, const float* inv_scale, size_t n, int qmax,
                            uint8_t* q) {
  const float fmax = static_cast<float>(qmax);
  const __m128 lo = _mm_setzero_ps(), hi = _mm_set1_ps(fmax);
  auto quant4 = [&](size_t at) {
    const __m128 t = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(x + at), _mm_loadu_ps(zero + at)), _mm_loadu_ps(inv_scale + at));
    return _mm_cvtps_epi32(_mm_min_ps(_mm_max_ps(t, lo), hi));
  };
  size_t i = 0;
  for (; i + 16 <= n; i += 16) Store16(quant4(i), quant4(i + 4), quant4(i + 8), quant4(i + 12), q + i);
  for (; i < n; ++i) q[i] = QuantizeAsymOne(x[i], zero[i], inv_scale[i], fmax);
}

void DequantizeInt8(const int8_t* q, size_t n, float scale, float* x) {
  const float step = scale / 127.0f;
  // -128 never comes from the encoder; read it as -127 so |x| <= scale holds for any input.
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(q[i] < -127 ? -127 : q[i]) * step;
}

AsymParams ChooseAsym(float min, float max, int qmax) {
  AsymParams p;
  p.zero_h = HalfAtOrBelow(min);
  const float zero = HalfToFloat(p.zero_h);
  p.scale_h = HalfAtOrAbove((max - zero) / static_cast<float>(qmax));
  // The division may round down; step until the grid reaches max (one step at most in practice).
  for (int i = 0; i < 4 && zero + static_cast<float>(qmax) * HalfToFloat(p.scale_h) < max; ++i) {
    p.scale_h = HalfStepUp(p.scale_h);
  }
  return p;
}

void ClampToHalfRange(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = x[i] < -kMaxHalf ? -kMaxHalf : (x[i] > kMaxHalf ? kMaxHalf : x[i]);
}

bool ValidAsym(uint16_t scale_h, uint16_t zero_h) {
  const bool scale_ok = (scale_h & 0x7c00u) != 0x7c00u && (scale_h & 0x8000u) == 0;
  const bool zero_ok = (zero_h & 0x7c00u) != 0x7c00u;
  return scale_ok && zero_ok;
}

void PackBits(const uint8_t* codes, size_t n, int bits, std::byte* out) {
  if (bits == 2) {
    size_t i = 0, o = 0;
    for (; i + 4 <= n; i += 4) {
      out[o++] = std::byte(codes[i] | codes[i + 1] << 2 | codes[i + 2] << 4 | codes[i + 3] << 6);
    }
    if (i < n) {
      uint8_t b = 0;
      for (int k = 0; i < n; ++i, ++k) b |= codes[i] << (2 * k);
      out[o] = std::byte(b);
    }
    return;
  }
  uint64_t acc = 0;
  int nb = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; ++i) {
    acc |= uint64_t{codes[i]} << nb;
    nb += bits;
    while (nb >= 8) {
      out[o++] = std::byte(acc & 0xff);
      acc >>= 8;
      nb -= 8;
    }
  }
  if (nb > 0) out[o] = std::byte(acc & 0xff);
}

void UnpackBits(const std::byte* in, size_t n, int bits, uint8_t* codes) {
  if (bits == 2) {
    size_t i = 0, ip = 0;
    for (; i + 4 <= n; i += 4) {
      const uint8_t b = std::to_integer<uint8_t>(in[ip++]);
      codes[i] = b & 3;
      codes[i + 1] = (b >> 2) & 3;
      codes[i + 2] = (b >> 4) & 3;
      codes[i + 3] = b >> 6;
    }
    if (i < n) {
      const uint8_t b = std::to_integer<uint8_t>(in[ip]);
      for (int k = 0; i < n; ++i, ++k) codes[i] = (b >> (2 * k)) & 3;
    }
    return;
  }
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  uint64_t acc = 0;
  int nb = 0;
  size_t ip = 0;
  for (size_t i = 0; i < n; ++i) {
    if (nb < bits) {
      acc |= uint64_t{std::to_integer<uint8_t>(in[ip++])} << nb;
      nb += 8;
    }
    codes[i] = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    nb -= bits;
  }
}

Status RunParallel(Executor* executor, size_t n, const std::function<Status(size_t)>& fn) {
  std::vector<Status> results(n);
  const std::function<void(size_t)> body = [&](size_t i) { results[i] = fn(i); };
  if (executor != nullptr) {
    executor->ParallelFor(n, body);
  } else {
    for (size_t i = 0; i < n; ++i) body(i);
  }
  for (auto& s : results) {
    if (!s.ok()) return std::move(s);
  }
  return Status::Ok();
}

}  // namespace kvtier::codec::internal
