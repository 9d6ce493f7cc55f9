#include "cachegen_tables.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <string>

#include "float_convert.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kvtier::codec::internal {
namespace {

// round(256 * 2^(i/16)): byte code e >= 1 weighs kFrac16[(e-1) % 16] << ((e-1) / 16).
constexpr uint32_t kFrac16[16] = {256, 267, 279, 292, 304, 318, 332, 347, 362, 378, 395, 412, 431, 450, 470, 490};

// Profile smoothing: weight and width (in mean absolute deviations) of the wide Laplace mixed in.
constexpr double kSmoothWeight = 1.0 / 32;
constexpr double kSmoothSpread = 4.0;

uint32_t ByteCodeWeight(uint32_t code) {
  if (code == 0) return 0;
  const uint32_t e = code - 1;
  return kFrac16[e & 15] << (e >> 4);
}
// Nibble v >= 1 is byte code 1 + 8 (v - 1): half-octave steps.
uint32_t CodeWeight(uint32_t code, WeightCodes codes) {
  if (codes == WeightCodes::kNibble) return code == 0 ? 0 : ByteCodeWeight(1 + 8 * (code - 1));
  return ByteCodeWeight(code);
}
// The code of probability p relative to the table's largest, max_p; 0 only for p == 0. Tiny
// rounding leftovers (an escape of ~1e-16) count as zero.
uint32_t WeightCode(double p, double max_p, WeightCodes codes) {
  if (p <= max_p * 1e-12) return 0;
  const double octaves = std::log2(max_p / p);
  if (codes == WeightCodes::kNibble) return static_cast<uint32_t>(std::clamp<long>(15 - std::lround(2 * octaves), 1, 15));
  return static_cast<uint32_t>(std::clamp<long>(255 - std::lround(16 * octaves), 1, 255));
}

void QuantizeRow(const float* v, uint32_t width, float scale, uint32_t bins, uint8_t* q) {
  const float b = static_cast<float>(bins);
  if (scale == 0.0f) {
    std::fill(q, q + width, static_cast<uint8_t>(bins));
    return;
  }
  const float inv = b / scale;
  if (std::isfinite(inv)) {
    uint32_t c = 0;
#if defined(__SSE2__)
    const __m128 vinv = _mm_set1_ps(inv), vb = _mm_set1_ps(b), vnb = _mm_set1_ps(-b);
    const __m128i vcenter = _mm_set1_epi32(static_cast<int>(bins));
    auto quant4 = [&](const float* p) {
      const __m128 y = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(p), vinv), vnb), vb);
      return _mm_add_epi32(_mm_cvtps_epi32(y), vcenter);  // round to nearest even
    };
    for (; c + 16 <= width; c += 16) {
      const __m128i lo = _mm_packs_epi32(quant4(v + c), quant4(v + c + 4));
      const __m128i hi = _mm_packs_epi32(quant4(v + c + 8), quant4(v + c + 12));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c), _mm_packus_epi16(lo, hi));
    }
#endif
    for (; c < width; ++c) {
      q[c] = static_cast<uint8_t>(std::lrint(std::clamp(v[c] * inv, -b, b)) + static_cast<long>(bins));
    }
    return;
  }
  // A subnormal scale: B / scale overflows in float.
  const double dinv = static_cast<double>(bins) / scale;
  for (uint32_t c = 0; c < width; ++c) {
    const double y = std::clamp(v[c] * dinv, -static_cast<double>(bins), static_cast<double>(bins));
    q[c] = static_cast<uint8_t>(std::lrint(y) + static_cast<long>(bins));
  }
}

// Largest |v|; false when some value is NaN or infinite.
bool AbsMax(const float* v, uint32_t width, float& absmax) {
  uint32_t c = 0;
  float m = 0.0f;
  bool finite = true;
#if defined(__SSE2__)
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff)), flt_max = _mm_set1_ps(FLT_MAX);
  __m128 vm = _mm_setzero_ps(), bad = _mm_setzero_ps();
  for (; c + 4 <= width; c += 4) {
    const __m128 a = _mm_and_ps(_mm_loadu_ps(v + c), abs_mask);
    vm = _mm_max_ps(vm, a);
    bad = _mm_or_ps(bad, _mm_cmpnle_ps(a, flt_max));  // true for NaN too
  }
  float lanes[4];
  _mm_storeu_ps(lanes, vm);
  m = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
  finite = _mm_movemask_ps(bad) == 0;
#endif
  for (; c < width; ++c) {
    const float a = std::fabs(v[c]);
    finite &= a <= FLT_MAX;
    m = std::max(m, a);
  }
  absmax = m;
  return finite;
}

}  // namespace

uint32_t DefaultBins(int level, uint32_t layer, uint32_t num_layers, uint32_t kv) {
  const uint32_t third = static_cast<uint32_t>(uint64_t{layer} * 3 / num_layers);
  return kDefaultBins[level - 1][third][kv];
}

float RoundScaleUp(float scale) {
  const uint32_t bits = std::bit_cast<uint32_t>(scale);
  uint32_t hi = bits >> 16;
  if ((hi << 16) != bits) ++hi;  // positive finite scales only: the next bf16 up
  return std::bit_cast<float>(hi << 16);
}

uint16_t ScaleBits(float bf16_scale) { return static_cast<uint16_t>(std::bit_cast<uint32_t>(bf16_scale) >> 16); }

float ScaleFromBits(uint16_t bits) { return std::bit_cast<float>(uint32_t{bits} << 16); }

Status QuantizeSlice(const std::byte* src, DType dtype, uint32_t num_tokens, uint32_t width, uint32_t bins,
                     bool anchor_delta, uint32_t tokens_per_stream, SliceSymbols& out) {
  out.scales.resize(num_tokens);
  out.symbols.resize(size_t{num_tokens} * width);
  std::vector<float> x(width), delta(width), anchor(width, 0.0f);
  const size_t row_bytes = size_t{width} * DTypeBytes(dtype);
  const float b = static_cast<float>(bins);
  for (uint32_t t = 0; t < num_tokens; ++t) {
    ToFloat(src + t * row_bytes, dtype, width, x.data());
    float absmax = 0.0f;
    if (!AbsMax(x.data(), width, absmax)) return InvalidArgument("cachegen cannot encode a NaN or infinite value (token " + std::to_string(t) + ")");
    if (absmax > kMaxRowScale / 2) {
      return InvalidArgument("cachegen cannot encode values beyond +-1.7e38 (token " + std::to_string(t) + ")");
    }
    uint8_t* q = out.symbols.data() + size_t{t} * width;
    if (IsDeltaRow(anchor_delta, t % tokens_per_stream)) {
      for (uint32_t c = 0; c < width; ++c) delta[c] = x[c] - anchor[c];
      float dmax = 0.0f;
      if (!AbsMax(delta.data(), width, dmax)) return InvalidArgument("cachegen: anchor delta overflows fp32 (token " + std::to_string(t) + ")");
      // Never coarser than the row's own absmax: deltas cost fewer bits at the same error bound.
      const float scale = RoundScaleUp(std::max(dmax, absmax));
      QuantizeRow(delta.data(), width, scale, bins, q);
      out.scales[t] = scale;
    } else {
      const float scale = RoundScaleUp(absmax);
      QuantizeRow(x.data(), width, scale, bins, q);
      out.scales[t] = scale;
      if (anchor_delta) {
        const float step = scale / b;
        for (uint32_t c = 0; c < width; ++c) anchor[c] = static_cast<float>(int{q[c]} - static_cast<int>(bins)) * step;
      }
    }
  }
  return Status::Ok();
}

void CountSymbols(const SliceSymbols& sym, uint32_t num_tokens, uint32_t width, uint32_t bins, bool anchor_delta,
                  uint32_t tokens_per_stream, bool count_plain, bool count_delta, std::vector<uint32_t>& counts) {
  const uint32_t alphabet = 2 * bins + 1;
  counts.resize(size_t{2} * width * alphabet);
  for (uint32_t t = 0; t < num_tokens; ++t) {
    const uint32_t kind = IsDeltaRow(anchor_delta, t % tokens_per_stream) ? kKindDelta : kKindPlain;
    if ((kind == kKindPlain && !count_plain) || (kind == kKindDelta && !count_delta)) continue;
    const uint8_t* q = sym.symbols.data() + size_t{t} * width;
    uint32_t* base = counts.data() + size_t{kind} * width * alphabet;
    for (uint32_t c = 0; c < width; ++c) ++base[size_t{c} * alphabet + q[c]];
  }
}

void AppendTable(const uint32_t* counts, uint32_t bins, WeightCodes codes, bool smooth, std::vector<std::byte>& out) {
  const uint32_t alphabet = 2 * bins + 1;
  std::vector<double> p(alphabet, 0.0);
  double total = 0, mean = 0;
  for (uint32_t s = 0; s < alphabet; ++s) {
    total += counts[s];
    mean += static_cast<double>(counts[s]) * s;
  }
  if (total == 0) {
    p[bins] = 1.0;  // nothing seen: the center
    mean = bins;
  } else {
    mean /= total;
    for (uint32_t s = 0; s < alphabet; ++s) p[s] = counts[s] / total;
  }
  if (smooth) {
    // Mix in a wide Laplace around the mean so symbols the samples missed stay cheap.
    double spread = 0;
    for (uint32_t s = 0; s < alphabet; ++s) spread += p[s] * std::fabs(s - mean);
    const double b = std::max(kSmoothSpread * spread, 1.5);
    std::vector<double> wide(alphabet);
    double wide_sum = 0;
    for (uint32_t s = 0; s < alphabet; ++s) wide_sum += wide[s] = std::exp(-std::fabs(s - mean) / b);
    for (uint32_t s = 0; s < alphabet; ++s) p[s] = (1 - kSmoothWeight) * p[s] + kSmoothWeight * wide[s] / wide_sum;
  }
  uint32_t lo = alphabet, hi = 0;
  for (uint32_t s = 0; s < alphabet; ++s) {
    if (p[s] > 0) {
      lo = std::min(lo, s);
      hi = s;
    }
  }
  uint32_t width = hi - lo + 1;
  if (width + (width < alphabet ? 1 : 0) > kMaxTableSymbols) {
    // Keep the densest window of kMaxTableSymbols - 1 symbols; the rest go through the escape.
    const uint32_t w = kMaxTableSymbols - 1;
    double sum = 0, best = -1;
    uint32_t best_lo = lo;
    for (uint32_t s = lo; s <= hi; ++s) {
      sum += p[s];
      if (s >= lo + w) sum -= p[s - w];
      if (s + 1 >= lo + w && sum > best) {
        best = sum;
        best_lo = s + 1 - w;
      }
    }
    lo = best_lo;
    width = w;
  }
  const bool escape = width < alphabet;
  const uint32_t n = width + (escape ? 1 : 0);
  double table_p[kMaxTableSymbols] = {};
  double outside = 1.0;
  for (uint32_t i = 0; i < width; ++i) {
    table_p[i] = p[lo + i];
    outside -= p[lo + i];
  }
  if (escape) table_p[width] = std::max(outside, 0.0);
  const double max_p = *std::max_element(table_p, table_p + n);

  out.push_back(static_cast<std::byte>(lo));
  out.push_back(static_cast<std::byte>(width));
  if (codes == WeightCodes::kByte) {
    for (uint32_t i = 0; i < n; ++i) out.push_back(static_cast<std::byte>(WeightCode(table_p[i], max_p, codes)));
  } else {
    for (uint32_t i = 0; i < n; i += 2) {
      const uint32_t a = WeightCode(table_p[i], max_p, codes);
      const uint32_t b = i + 1 < n ? WeightCode(table_p[i + 1], max_p, codes) : 0;
      out.push_back(static_cast<std::byte>(a | (b << 4)));
    }
  }
}

bool ParseTable(std::span<const std::byte> bytes, size_t& pos, uint32_t bins, WeightCodes codes, FreqTable& table,
                TableInfo& info) {
  const uint32_t alphabet = 2 * bins + 1;
  if (bytes.size() - pos < 2) return false;
  const uint32_t lo = static_cast<uint8_t>(bytes[pos]);
  const uint32_t width = static_cast<uint8_t>(bytes[pos + 1]);
  pos += 2;
  if (width == 0 || lo + width > alphabet) return false;
  const bool escape = width < alphabet;
  const uint32_t n = width + (escape ? 1 : 0);
  if (n > kMaxTableSymbols) return false;
  const size_t code_bytes = codes == WeightCodes::kByte ? n : (n + 1) / 2;
  if (bytes.size() - pos < code_bytes) return false;
  uint32_t weights[kMaxTableSymbols];
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t code;
    if (codes == WeightCodes::kByte) {
      code = static_cast<uint8_t>(bytes[pos + i]);
    } else {
      code = (static_cast<uint8_t>(bytes[pos + i / 2]) >> (4 * (i & 1))) & 15;
    }
    weights[i] = CodeWeight(code, codes);
  }
  if (codes == WeightCodes::kNibble && (n & 1) && (static_cast<uint8_t>(bytes[pos + n / 2]) >> 4) != 0) return false;
  pos += code_bytes;
  NormalizeFreqs(weights, n, table);
  info.lo = static_cast<uint8_t>(lo);
  info.width = static_cast<uint8_t>(width);
  info.escape = escape ? 1 : 0;
  info.esc_bits = static_cast<uint8_t>(std::bit_width(alphabet - 1));
  return true;
}

bool ParseSliceTables(std::span<const std::byte> bytes, size_t& pos, uint32_t bins, uint32_t kinds, uint32_t width,
                      WeightCodes codes, SliceTables& out) {
  if (bins < 1 || bins > kMaxBins) return false;
  // Every table takes at least 3 bytes: refuse counts the input cannot hold before allocating.
  if (uint64_t{kinds} * width * 3 > bytes.size() - pos) return false;
  out.bins = bins;
  out.kinds = kinds;
  out.tables.resize(size_t{kinds} * width);
  out.info.resize(size_t{kinds} * width);
  out.lo.resize(size_t{kinds} * width);
  for (size_t i = 0; i < out.tables.size(); ++i) {
    if (!ParseTable(bytes, pos, bins, codes, out.tables[i], out.info[i])) return false;
    out.lo[i] = out.info[i].lo;
  }
  return true;
}

}  // namespace kvtier::codec::internal
