// The cachegen codec (CACHEGEN.md): per-row absmax quantization with per-layer bin counts, optional
// anchor-delta rows, rANS coding with per-channel static tables. One data stream per
// (layer, K|V, sub-chunk of <= max_tokens_per_stream tokens); with inline tables, one table stream
// per (layer, K|V) first.
#include <algorithm>
#include <bit>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cachegen_layout.h"
#include "cachegen_tables.h"
#include "codec_impl.h"
#include "float_convert.h"
#include "kvtier/codec/model_profile.h"
#include "range_coder.h"

namespace kvtier::codec::internal {
namespace {

std::string HexId(uint64_t id) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, id);
  return buf;
}

void RunParallel(Executor* executor, size_t n, const std::function<void(size_t)>& fn) {
  if (executor == nullptr) {
    for (size_t i = 0; i < n; ++i) fn(i);
  } else {
    executor->ParallelFor(n, fn);
  }
}

Status FirstError(const std::vector<Status>& statuses) {
  for (const Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

bool ProfileMatches(const ModelProfile& profile, const KvShape& shape) {
  return profile.num_layers() == shape.num_layers && profile.num_kv_heads() == shape.num_kv_heads &&
         profile.head_dim() == shape.head_dim;
}

Status ProfileMismatch(const ModelProfile& profile, const KvShape& shape) {
  return InvalidArgument("cachegen profile " + HexId(profile.id()) + " is for layers/kv_heads/head_dim " +
                         std::to_string(profile.num_layers()) + "/" + std::to_string(profile.num_kv_heads()) + "/" +
                         std::to_string(profile.head_dim()) + ", the chunk is " + std::to_string(shape.num_layers) +
                         "/" + std::to_string(shape.num_kv_heads) + "/" + std::to_string(shape.head_dim));
}

// ---- encode ----

// Codes channel c's symbol v of one row with table (t, in) on state x (backwards: escape bits first).
inline __attribute__((always_inline)) void EncodeSymbol(uint32_t& x, const FreqTable& t, const TableInfo& in,
                                                        uint32_t v, uint16_t*& pos) {
  const uint32_t i = v - in.lo;  // wraps for symbols below the window
  if (i < in.width) [[likely]] {
    RansEncodeStep(x, t.cum[i], t.cum[i + 1] - t.cum[i], pos);
    return;
  }
  const uint32_t shift = kProbBits - in.esc_bits;
  RansEncodeStep(x, v << shift, 1u << shift, pos);
  const uint32_t e = in.width;
  RansEncodeStep(x, t.cum[e], t.cum[e + 1] - t.cum[e], pos);
}

// Codes one row, last channel first; lane of channel c is c % 4, states held in registers.
inline void EncodeRow(uint32_t (&x)[kRansLanes], const FreqTable* ft, const TableInfo* info, const uint8_t* q,
                      uint32_t w, uint16_t*& pos) {
  uint32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
  uint32_t c = w & ~3u;
  if (w - c >= 3) EncodeSymbol(x2, ft[c + 2], info[c + 2], q[c + 2], pos);
  if (w - c >= 2) EncodeSymbol(x1, ft[c + 1], info[c + 1], q[c + 1], pos);
  if (w - c >= 1) EncodeSymbol(x0, ft[c], info[c], q[c], pos);
  while (c != 0) {
    c -= 4;
    EncodeSymbol(x3, ft[c + 3], info[c + 3], q[c + 3], pos);
    EncodeSymbol(x2, ft[c + 2], info[c + 2], q[c + 2], pos);
    EncodeSymbol(x1, ft[c + 1], info[c + 1], q[c + 1], pos);
    EncodeSymbol(x0, ft[c], info[c], q[c], pos);
  }
  x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
}

void EncodeDataStream(const SliceSymbols& sym, const SliceTables& tabs, const Geometry& g, bool anchor_delta,
                      uint32_t t0, uint32_t t1, std::vector<std::byte>& out) {
  const uint32_t w = g.width;
  out.resize(size_t{t1 - t0} * 2);
  for (uint32_t t = t0; t < t1; ++t) {
    const uint16_t bits = ScaleBits(sym.scales[t]);
    std::memcpy(out.data() + size_t{t - t0} * 2, &bits, 2);
  }
  // At most two words per symbol, plus the spare word RansEncodeStep may store below the last kept one.
  thread_local std::vector<uint16_t> words;
  words.resize(size_t{2} * (t1 - t0) * w + 1);
  uint16_t* const top = words.data() + words.size();
  uint16_t* pos = top;
  uint32_t x[kRansLanes] = {kRansLow, kRansLow, kRansLow, kRansLow};
  for (uint32_t t = t1; t-- > t0;) {
    const size_t k = size_t{IsDeltaRow(anchor_delta, t - t0) ? kKindDelta : kKindPlain} * w;
    EncodeRow(x, tabs.tables.data() + k, tabs.info.data() + k, sym.symbols.data() + size_t{t} * w, w, pos);
  }
  RansWriteStream(x, pos, static_cast<size_t>(top - pos), out);
}

Status EncodeSlice(const KvView& kv, const EncodeOptions& options, const Geometry& g, uint32_t lk,
                   const ProfileTables* profile, EncodedStreams& out) {
  const uint32_t layer = lk / 2, kvi = lk % 2;
  const bool inline_tables = profile == nullptr;
  const uint32_t bins = inline_tables ? DefaultBins(options.level, layer, g.layers, kvi)
                                      : profile->levels[options.level - 1][lk].bins;
  SliceSymbols sym;
  KVTIER_RETURN_IF_ERROR(QuantizeSlice(kv.data.data() + g.RowOffset(lk, 0), kv.shape.dtype, g.tokens, g.width, bins,
                                       options.anchor_delta, g.tokens_per_stream, sym));
  SliceTables local;
  const SliceTables* tabs = nullptr;
  size_t first_data = 0;
  if (inline_tables) {
    std::vector<uint32_t> counts;
    CountSymbols(sym, g.tokens, g.width, bins, options.anchor_delta, g.tokens_per_stream, true, options.anchor_delta,
                 counts);
    const uint32_t kinds = options.anchor_delta ? 2 : 1;
    const uint32_t alphabet = 2 * bins + 1;
    std::vector<std::byte>& ts = out.streams[lk];
    ts.clear();
    ts.push_back(static_cast<std::byte>(bins));
    for (size_t i = 0; i < size_t{kinds} * g.width; ++i) AppendTable(&counts[i * alphabet], bins, WeightCodes::kNibble, false, ts);
    // Code with exactly what the decoder will read back.
    size_t pos = 1;
    if (!ParseSliceTables(ts, pos, bins, kinds, g.width, WeightCodes::kNibble, local) || pos != ts.size()) {
      return Internal("cachegen: inline tables do not read back");
    }
    tabs = &local;
    first_data = g.slices();
  } else {
    tabs = &profile->levels[options.level - 1][lk];
  }
  for (uint32_t sc = 0; sc < g.sub_chunks; ++sc) {
    const uint32_t t0 = sc * g.tokens_per_stream;
    const uint32_t t1 = std::min(g.tokens, t0 + g.tokens_per_stream);
    EncodeDataStream(sym, *tabs, g, options.anchor_delta, t0, t1,
                     out.streams[first_data + size_t{lk} * g.sub_chunks + sc]);
  }
  return Status::Ok();
}

// ---- decode ----

float MaxFinite(DType dtype) {
  switch (dtype) {
    case DType::kFp16: return 65504.0f;
    case DType::kBf16: return std::bit_cast<float>(uint32_t{0x7f7f0000});
    default: return FLT_MAX;
  }
}

// row[c] = (add ? add[c] : 0) + (uint8(rel[c] + lo[c]) - center) * step, clamped to +-max_out; `save`
// (if set) receives the unclamped plain value (the anchor, for the encoder's identical reconstruction).
void SymbolsToFloats(const uint8_t* rel, const uint8_t* lo, uint32_t w, int center, float step, float max_out,
                     const float* add, float* save, float* row) {
  uint32_t c = 0;
#if defined(__SSE2__)
  const __m128 vstep = _mm_set1_ps(step), vmax = _mm_set1_ps(max_out), vmin = _mm_set1_ps(-max_out);
  const __m128i vcenter = _mm_set1_epi32(center), zero = _mm_setzero_si128();
  for (; c + 16 <= w; c += 16) {
    const __m128i b = _mm_add_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rel + c)),
                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(lo + c)));
    const __m128i h[2] = {_mm_unpacklo_epi8(b, zero), _mm_unpackhi_epi8(b, zero)};
    for (int k = 0; k < 4; ++k) {
      const __m128i i32 = (k & 1) ? _mm_unpackhi_epi16(h[k >> 1], zero) : _mm_unpacklo_epi16(h[k >> 1], zero);
      __m128 f = _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(i32, vcenter)), vstep);
      if (save != nullptr) _mm_storeu_ps(save + c + 4 * k, f);
      if (add != nullptr) f = _mm_add_ps(_mm_loadu_ps(add + c + 4 * k), f);
      _mm_storeu_ps(row + c + 4 * k, _mm_min_ps(_mm_max_ps(f, vmin), vmax));
    }
  }
#endif
  for (; c < w; ++c) {
    float f = static_cast<float>(int{static_cast<uint8_t>(rel[c] + lo[c])} - center) * step;
    if (save != nullptr) save[c] = f;
    if (add != nullptr) f = add[c] + f;
    row[c] = std::clamp(f, -max_out, max_out);
  }
}

// How one decoded row turns into output values: what stays fixed for a stream, and the row's own parts.
struct RowOutput {
  const uint8_t* lo;  // the tables' window offsets, added to the decoder's relative symbols
  uint32_t width;
  int center;         // B: symbol B is the value 0
  float max_out;      // the dtype's largest finite value
  DType dtype;
  float* scratch;     // width floats, for the portable path
};

// Writes row t's output: SymbolsToFloats, then the dtype conversion.
void RowToOutputPortable(const RowOutput& o, const uint8_t* rel, float step, const float* add, float* save,
                         std::byte* dst) {
  SymbolsToFloats(rel, o.lo, o.width, o.center, step, o.max_out, add, save, o.scratch);
  FromFloat(o.scratch, o.width, o.dtype, dst);
}

// One copy of the row decoder per instruction set (cachegen_row_decoder.h explains why they are
// textual copies); PickRowDecoder chooses the widest the CPU has, once. GCC takes the target from
// `#pragma GCC target`, clang (the fuzz build) only from a pushed target attribute.
namespace row_sse2 {
#define CACHEGEN_FIND_SYMBOL(t, slot) FindSymbol(t, slot)
#include "cachegen_row_decoder.h"
#undef CACHEGEN_FIND_SYMBOL
}  // namespace row_sse2

#if defined(__x86_64__) && defined(__GNUC__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
namespace row_avx2 {
inline uint32_t FindSymbolAvx2(const FreqTable& t, uint32_t slot) {
  const __m256i v = _mm256_set1_epi16(static_cast<short>(slot));
  const __m256i* p = reinterpret_cast<const __m256i*>(t.cum);
  const uint64_t lo = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpgt_epi16(_mm256_load_si256(p), v)));
  const uint64_t hi = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpgt_epi16(_mm256_load_si256(p + 1), v)));
  return static_cast<uint32_t>(__builtin_ctzll(lo | (hi << 32)) >> 1) - 1;  // two mask bits per entry
}
#define CACHEGEN_FIND_SYMBOL(t, slot) FindSymbolAvx2(t, slot)
#include "cachegen_row_decoder.h"
#undef CACHEGEN_FIND_SYMBOL
}  // namespace row_avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw")
#endif
namespace row_avx512 {
inline uint32_t FindSymbolAvx512(const FreqTable& t, uint32_t slot) {
  const __mmask32 greater = _mm512_cmpgt_epi16_mask(_mm512_load_si512(t.cum), _mm512_set1_epi16(static_cast<short>(slot)));
  return static_cast<uint32_t>(__builtin_ctz(greater)) - 1;
}
#define CACHEGEN_FIND_SYMBOL(t, slot) FindSymbolAvx512(t, slot)
#include "cachegen_row_decoder.h"
#undef CACHEGEN_FIND_SYMBOL

// 16 values of the row at c, as SymbolsToFloats computes them (same operations in the same order, no
// FMA: the target does not enable it), clamped. The all-lanes maskz forms keep GCC 12 from warning about
// the undefined pass-through operand of the unmasked intrinsics.
constexpr __mmask16 kAll16 = 0xffff;

inline __m512 SixteenValues(const RowOutput& o, const uint8_t* rel, uint32_t c, __m512 vstep, const float* add,
                            float* save) {
  const __m128i b = _mm_add_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rel + c)),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(o.lo + c)));
  const __m512i q = _mm512_sub_epi32(_mm512_maskz_cvtepu8_epi32(kAll16, b), _mm512_set1_epi32(o.center));
  __m512 f = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(kAll16, q), vstep);
  if (save != nullptr) _mm512_storeu_ps(save + c, f);
  if (add != nullptr) f = _mm512_add_ps(_mm512_loadu_ps(add + c), f);
  return _mm512_maskz_min_ps(kAll16, _mm512_maskz_max_ps(kAll16, f, _mm512_set1_ps(-o.max_out)), _mm512_set1_ps(o.max_out));
}

// Round to nearest even, as FloatToBf16 does for the finite values a row holds.
inline __m256i ToBf16(__m512 f) {
  const __m512i bits = _mm512_castps_si512(f);
  const __m512i odd = _mm512_and_si512(_mm512_maskz_srli_epi32(kAll16, bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
  return _mm512_maskz_cvtepi32_epi16(kAll16, _mm512_maskz_srli_epi32(kAll16, rounded, 16));
}

// RowToOutputPortable in one pass: symbols to values to the dtype, 16 channels at a time.
void RowToOutput(const RowOutput& o, const uint8_t* rel, float step, const float* add, float* save, std::byte* dst) {
  const __m512 vstep = _mm512_set1_ps(step);
  const uint32_t n16 = o.width & ~15u;
  for (uint32_t c = 0; c < n16; c += 16) {
    const __m512 f = SixteenValues(o, rel, c, vstep, add, save);
    switch (o.dtype) {
      case DType::kFp16:
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * c), _mm512_maskz_cvtps_ph(kAll16, f, _MM_FROUND_TO_NEAREST_INT));
        break;
      case DType::kBf16:
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * c), ToBf16(f));
        break;
      default:
        _mm512_storeu_ps(reinterpret_cast<float*>(dst + 4 * c), f);
        break;
    }
  }
  if (n16 == o.width) return;
  const size_t bytes = DTypeBytes(o.dtype);
  const RowOutput tail{o.lo + n16, o.width - n16, o.center, o.max_out, o.dtype, o.scratch};
  RowToOutputPortable(tail, rel + n16, step, add == nullptr ? nullptr : add + n16,
                      save == nullptr ? nullptr : save + n16, dst + n16 * bytes);
}
}  // namespace row_avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

using RowDecoder = void (*)(RansDecoder&, const FreqTable*, const TableInfo*, uint32_t, uint32_t, uint8_t*);
using RowWriter = void (*)(const RowOutput&, const uint8_t*, float, const float*, float*, std::byte*);
struct RowCodecs {
  RowDecoder decode;
  RowWriter write;
};

RowCodecs PickRowCodecs() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512bw")) return {row_avx512::DecodeRow, row_avx512::RowToOutput};
  if (__builtin_cpu_supports("avx2")) return {row_avx2::DecodeRow, RowToOutputPortable};
#endif
  return {row_sse2::DecodeRow, RowToOutputPortable};
}

// Per-thread scratch of DecodeDataStream, reused across streams and calls (grows to the widest row).
struct DecodeScratch {
  std::vector<float> scales, row, anchor;
  std::vector<uint8_t> sym;
};

Status DecodeDataStream(std::span<const std::byte> bytes, uint32_t index, const SliceTables& tabs, const Geometry& g,
                        bool anchor_delta, DType dtype, uint32_t lk, uint32_t t0, uint32_t t1,
                        std::span<std::byte> out) {
  const uint32_t w = g.width;
  const uint32_t rows = t1 - t0;
  thread_local DecodeScratch scratch;
  std::vector<float>& scales = scratch.scales;
  scales.resize(rows);
  RansDecoder dec;
  KVTIER_RETURN_IF_ERROR(OpenDataStream(bytes, index, rows, scales.data(), dec));
  const uint32_t bins = tabs.bins;
  const uint32_t alphabet = 2 * bins + 1;
  const float b = static_cast<float>(bins);
  const int center = static_cast<int>(bins);
  const float max_out = MaxFinite(dtype);
  static const RowCodecs codecs = PickRowCodecs();
  scratch.sym.resize(w);
  scratch.row.resize(w);
  scratch.anchor.assign(w, 0.0f);
  uint8_t* const sym = scratch.sym.data();
  float* const anchor = scratch.anchor.data();
  for (uint32_t t = t0; t < t1; ++t) {
    const bool delta = IsDeltaRow(anchor_delta, t - t0);
    const size_t k = size_t{delta ? kKindDelta : kKindPlain} * w;
    codecs.decode(dec, tabs.tables.data() + k, tabs.info.data() + k, w, alphabet, sym);
    if (dec.error) return CorruptStream(index, kCorruptEntropy);
    const float step = scales[t - t0] / b;
    // A reconstruction may pass the largest finite value by up to half a step: keep it finite.
    const RowOutput o{tabs.lo.data() + k, w, center, max_out, dtype, scratch.row.data()};
    codecs.write(o, sym, step, delta ? anchor : nullptr, !delta && anchor_delta ? anchor : nullptr,
                 out.data() + g.RowOffset(lk, t));
  }
  if (!dec.Finish()) return CorruptStream(index, kUnfinishedEntropy);
  return Status::Ok();
}

}  // namespace

Status EncodeCacheGen(const KvView& kv, const EncodeOptions& options, EncodedStreams& out) {
  const KvShape& shape = kv.shape;
  if (options.level < kCacheGenMinLevel || options.level > kCacheGenMaxLevel) {
    return InvalidArgument("cachegen level " + std::to_string(options.level) + " is outside 1..3");
  }
  if (options.max_tokens_per_stream < 1 || options.max_tokens_per_stream > 256) {
    return InvalidArgument("cachegen max_tokens_per_stream must be 1..256");
  }
  const ProfileTables* profile = nullptr;
  if (options.profile != nullptr) {
    if (!ProfileMatches(*options.profile, shape)) return ProfileMismatch(*options.profile, shape);
    profile = &options.profile->tables();
  }
  const Geometry g(shape, options.max_tokens_per_stream);
  out.params.level = static_cast<uint8_t>(options.level);
  out.params.flags = static_cast<uint8_t>((options.anchor_delta ? kFlagAnchorDelta : 0) |
                                          (profile == nullptr ? kFlagInlineTables : 0));
  out.params.codec_param = options.max_tokens_per_stream;
  out.params.profile_id = profile == nullptr ? 0 : options.profile->id();
  out.streams.resize((profile == nullptr ? g.slices() : 0) + size_t{g.slices()} * g.sub_chunks);
  std::vector<Status> statuses(g.slices());
  RunParallel(options.executor, g.slices(), [&](size_t lk) {
    statuses[lk] = EncodeSlice(kv, options, g, static_cast<uint32_t>(lk), profile, out);
  });
  return FirstError(statuses);
}

uint32_t CacheGenLayout::StreamEndToken(size_t i) const {
  return std::min(geometry.tokens, StreamFirstToken(i) + geometry.tokens_per_stream);
}

Status CorruptStream(uint32_t index, const char* what) {
  return InvalidArgument("cachegen stream " + std::to_string(index) + ": " + what);
}

Status OpenDataStream(std::span<const std::byte> bytes, uint32_t index, uint32_t rows, float* scales,
                      RansDecoder& dec) {
  if (bytes.size() < size_t{rows} * 2 + kRansHeaderBytes) {
    return CorruptStream(index, kStreamTooShort);
  }
  for (uint32_t r = 0; r < rows; ++r) {
    uint16_t bits;
    std::memcpy(&bits, bytes.data() + size_t{r} * 2, 2);
    scales[r] = ScaleFromBits(bits);
    if (!(scales[r] >= 0.0f && scales[r] <= FLT_MAX)) return CorruptStream(index, kBadRowScale);
  }
  if (!dec.Init(bytes.subspan(size_t{rows} * 2))) return CorruptStream(index, kBadCoderStates);
  return Status::Ok();
}

namespace {

// Parses the table stream of every slice (one task per slice) into layout.inline_slices.
Status ParseInlineTables(const ParsedContainer& in, const DecodeOptions& options, CacheGenLayout& layout) {
  const Geometry& g = layout.geometry;
  layout.inline_slices.resize(g.slices());
  std::vector<Status> statuses(g.slices());
  RunParallel(options.executor, g.slices(), [&](size_t lk) {
    Result<std::span<const std::byte>> bytes = StreamBytes(in, static_cast<uint32_t>(lk));
    if (!bytes.ok()) {
      statuses[lk] = bytes.status();
      return;
    }
    size_t pos = 1;
    const uint32_t kinds = layout.anchor_delta ? 2 : 1;
    if (bytes->empty() ||
        !ParseSliceTables(*bytes, pos, static_cast<uint8_t>((*bytes)[0]), kinds, g.width, WeightCodes::kNibble,
                          layout.inline_slices[lk]) ||
        pos != bytes->size()) {
      statuses[lk] = InvalidArgument("cachegen table stream " + std::to_string(lk) + " is malformed");
    }
  });
  return FirstError(statuses);
}

}  // namespace

Result<CacheGenLayout> PrepareCacheGenDecode(const ParsedContainer& in, uint64_t out_bytes,
                                             const DecodeOptions& options) {
  const ContainerInfo& info = in.info;
  const KvShape& shape = info.shape;
  const uint32_t tps = in.params.codec_param;
  if (tps < 1 || tps > 256) return InvalidArgument("cachegen: tokens per stream " + std::to_string(tps) + " outside 1..256");
  const int level = in.params.level;
  if (level < kCacheGenMinLevel || level > kCacheGenMaxLevel) {
    return InvalidArgument("cachegen level " + std::to_string(level) + " is outside 1..3");
  }
  CacheGenLayout layout(Geometry(shape, tps));
  layout.level = level;
  layout.anchor_delta = (in.params.flags & kFlagAnchorDelta) != 0;
  layout.inline_tables = (in.params.flags & kFlagInlineTables) != 0;
  if (layout.inline_tables == (in.params.profile_id != 0)) {
    return InvalidArgument("cachegen chunk must carry either inline tables or a profile id");
  }
  if (out_bytes != shape.RawBytes()) return InvalidArgument("cachegen: output buffer size does not match the shape");
  const Geometry& g = layout.geometry;
  const uint64_t expected = (layout.inline_tables ? g.slices() : 0) + uint64_t{g.slices()} * g.sub_chunks;
  if (info.num_streams != expected) {
    return InvalidArgument("cachegen chunk has " + std::to_string(info.num_streams) + " streams, its shape needs " +
                           std::to_string(expected));
  }
  if (layout.inline_tables) {
    KVTIER_RETURN_IF_ERROR(ParseInlineTables(in, options, layout));
    layout.first_data = g.slices();
  } else {
    const ModelProfile* profile = options.profiles ? options.profiles(in.params.profile_id) : nullptr;
    if (profile == nullptr) return NotFound("unknown cachegen profile " + HexId(in.params.profile_id));
    if (!ProfileMatches(*profile, shape)) return ProfileMismatch(*profile, shape);
    layout.profile_slices = &profile->tables().levels[level - 1];
  }
  return layout;
}

Status DecodeCacheGen(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options) {
  Result<CacheGenLayout> prepared = PrepareCacheGenDecode(in, out.size(), options);
  if (!prepared.ok()) return prepared.status();
  const CacheGenLayout& layout = *prepared;
  const size_t n = layout.num_data_streams();
  std::vector<Status> statuses(n);
  RunParallel(options.executor, n, [&](size_t i) {
    const uint32_t index = static_cast<uint32_t>(layout.first_data + i);
    Result<std::span<const std::byte>> bytes = StreamBytes(in, index);
    if (!bytes.ok()) {
      statuses[i] = bytes.status();
      return;
    }
    const uint32_t lk = layout.StreamSlice(i);
    statuses[i] = DecodeDataStream(*bytes, index, layout.slice(lk), layout.geometry, layout.anchor_delta,
                                   in.info.shape.dtype, lk, layout.StreamFirstToken(i), layout.StreamEndToken(i), out);
  });
  return FirstError(statuses);
}

}  // namespace kvtier::codec::internal
