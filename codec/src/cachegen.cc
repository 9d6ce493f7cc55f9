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

#include "cachegen_tables.h"
#include "codec_impl.h"
#include "float_convert.h"
#include "kvtier/codec/model_profile.h"
#include "range_coder.h"

namespace kvtier::codec::internal {
namespace {

// The part of the chunk's shape every cachegen function needs.
struct Geometry {
  uint32_t layers = 0;
  uint32_t width = 0;   // kv_heads * head_dim: channels of one row
  uint32_t tokens = 0;
  uint32_t tokens_per_stream = 0;
  uint32_t sub_chunks = 0;
  size_t dtype_bytes = 0;

  Geometry(const KvShape& shape, uint32_t tps)
      : layers(shape.num_layers),
        width(shape.num_kv_heads * shape.head_dim),
        tokens(shape.num_tokens),
        tokens_per_stream(tps),
        sub_chunks((shape.num_tokens + tps - 1) / tps),
        dtype_bytes(DTypeBytes(shape.dtype)) {}
  uint32_t slices() const { return 2 * layers; }
  // Byte offset of row t of slice lk (= layer * 2 + kv) in the canonical layout.
  size_t RowOffset(uint32_t lk, uint32_t t) const { return (size_t{lk} * tokens + t) * width * dtype_bytes; }
};

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

void EncodeDataStream(const SliceSymbols& sym, const SliceTables& tabs, const Geometry& g, bool anchor_delta,
                      uint32_t t0, uint32_t t1, std::vector<std::byte>& out) {
  const uint32_t w = g.width;
  out.resize(size_t{t1 - t0} * 4);
  std::memcpy(out.data(), sym.scales.data() + t0, out.size());
  RansEncoder enc(size_t{2} * (t1 - t0) * w);
  for (uint32_t t = t1; t-- > t0;) {
    const uint32_t kind = IsDeltaRow(anchor_delta, t - t0) ? kKindDelta : kKindPlain;
    const FreqTable* ft = tabs.tables.data() + size_t{kind} * w;
    const TableInfo* info = tabs.info.data() + size_t{kind} * w;
    const uint8_t* q = sym.symbols.data() + size_t{t} * w;
    for (uint32_t c = w; c-- > 0;) {
      const uint32_t lane = c % kRansLanes;
      const uint16_t* cum = ft[c].cum;
      const uint32_t i = uint32_t{q[c]} - info[c].lo;  // wraps for symbols below the window
      if (i < info[c].width) {
        enc.Put(lane, cum[i], cum[i + 1] - cum[i]);
      } else {
        const uint32_t e = info[c].width;
        enc.PutBits(lane, q[c], info[c].esc_bits);
        enc.Put(lane, cum[e], cum[e + 1] - cum[e]);
      }
    }
  }
  enc.Finish(out);
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

// Decodes one row's symbols. kChecked = false requires 4 * width bytes left (two words per symbol
// at most), so the refill needs no bounds check.
template <bool kChecked>
void DecodeRowSymbols(RansDecoder& d, const FreqTable* ft, const TableInfo* info, uint32_t width, uint32_t alphabet,
                      uint8_t* sym) {
  const std::byte* p = d.pos;
  const std::byte* const e = d.end;
  bool err = d.error;
  uint32_t x0 = d.state[0], x1 = d.state[1], x2 = d.state[2], x3 = d.state[3];
  auto one = [&](uint32_t& x, uint32_t c) __attribute__((always_inline)) {
    const FreqTable& t = ft[c];
    const uint32_t slot = x & (kProbScale - 1);
    const uint32_t s = FindSymbol(t, slot);
    const uint32_t start = t.cum[s];
    x = (t.cum[s + 1] - start) * (x >> kProbBits) + slot - start;
    if constexpr (kChecked) {
      if (x < kRansLow) {
        uint16_t w = 0;
        if (p + 2 <= e) {
          std::memcpy(&w, p, 2);
          p += 2;
        } else {
          err = true;
        }
        x = (x << 16) | w;
      }
    } else {
      uint16_t w;
      std::memcpy(&w, p, 2);
      const bool refill = x < kRansLow;
      x = refill ? (x << 16) | w : x;
      p += refill ? 2 : 0;
    }
    const TableInfo in = info[c];
    if (s < in.width) [[likely]] {
      sym[c] = static_cast<uint8_t>(in.lo + s);
    } else {
      uint32_t v = RansDecoder::GetBits<true>(x, in.esc_bits, p, e, err);
      if (v >= alphabet) {
        err = true;
        v = 0;
      }
      sym[c] = static_cast<uint8_t>(v);
    }
  };
  uint32_t c = 0;
  for (; c + 4 <= width; c += 4) {
    one(x0, c);
    one(x1, c + 1);
    one(x2, c + 2);
    one(x3, c + 3);
  }
  if (c < width) one(x0, c++);
  if (c < width) one(x1, c++);
  if (c < width) one(x2, c++);
  d.state[0] = x0;
  d.state[1] = x1;
  d.state[2] = x2;
  d.state[3] = x3;
  d.pos = p;
  d.error = err;
}

Status DecodeDataStream(std::span<const std::byte> bytes, uint32_t index, const SliceTables& tabs, const Geometry& g,
                        bool anchor_delta, DType dtype, uint32_t lk, uint32_t t0, uint32_t t1,
                        std::span<std::byte> out) {
  const uint32_t w = g.width;
  const uint32_t rows = t1 - t0;
  auto corrupt = [index](const char* what) {
    return InvalidArgument("cachegen stream " + std::to_string(index) + ": " + what);
  };
  if (bytes.size() < size_t{rows} * 4 + kRansHeaderBytes) return corrupt("shorter than its scales and coder states");
  std::vector<float> scales(rows);
  std::memcpy(scales.data(), bytes.data(), size_t{rows} * 4);
  for (float s : scales) {
    if (!(s >= 0.0f && s <= FLT_MAX)) return corrupt("row scale is negative, NaN or infinite");
  }
  RansDecoder dec;
  if (!dec.Init(bytes.subspan(size_t{rows} * 4))) return corrupt("malformed coder states");
  const uint32_t bins = tabs.bins;
  const uint32_t alphabet = 2 * bins + 1;
  const float b = static_cast<float>(bins);
  const int center = static_cast<int>(bins);
  const float max_out = MaxFinite(dtype);
  std::vector<uint8_t> sym(w);
  std::vector<float> row(w), anchor(w, 0.0f);
  for (uint32_t t = t0; t < t1; ++t) {
    const bool delta = IsDeltaRow(anchor_delta, t - t0);
    const size_t k = size_t{delta ? kKindDelta : kKindPlain} * w;
    if (dec.BytesLeft() >= size_t{4} * w) {
      DecodeRowSymbols<false>(dec, tabs.tables.data() + k, tabs.info.data() + k, w, alphabet, sym.data());
    } else {
      DecodeRowSymbols<true>(dec, tabs.tables.data() + k, tabs.info.data() + k, w, alphabet, sym.data());
    }
    if (dec.error) return corrupt("entropy-coded data is truncated or corrupt");
    const float step = scales[t - t0] / b;
    if (delta) {
      for (uint32_t c = 0; c < w; ++c) row[c] = anchor[c] + static_cast<float>(int{sym[c]} - center) * step;
    } else {
      for (uint32_t c = 0; c < w; ++c) row[c] = static_cast<float>(int{sym[c]} - center) * step;
      if (anchor_delta) std::copy(row.begin(), row.end(), anchor.begin());
    }
    // A reconstruction may pass the largest finite value by up to half a step: keep it finite.
    for (uint32_t c = 0; c < w; ++c) row[c] = std::clamp(row[c], -max_out, max_out);
    FromFloat(row.data(), w, dtype, out.data() + g.RowOffset(lk, t));
  }
  if (!dec.Finish()) return corrupt("entropy-coded data does not end where the stream ends");
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

Status DecodeCacheGen(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options) {
  const ContainerInfo& info = in.info;
  const KvShape& shape = info.shape;
  const uint32_t tps = in.params.codec_param;
  if (tps < 1 || tps > 256) return InvalidArgument("cachegen: tokens per stream " + std::to_string(tps) + " outside 1..256");
  const int level = in.params.level;
  if (level < kCacheGenMinLevel || level > kCacheGenMaxLevel) {
    return InvalidArgument("cachegen level " + std::to_string(level) + " is outside 1..3");
  }
  const bool anchor_delta = (in.params.flags & kFlagAnchorDelta) != 0;
  const bool inline_tables = (in.params.flags & kFlagInlineTables) != 0;
  if (inline_tables == (in.params.profile_id != 0)) {
    return InvalidArgument("cachegen chunk must carry either inline tables or a profile id");
  }
  if (out.size() != shape.RawBytes()) return InvalidArgument("cachegen: output buffer size does not match the shape");
  const Geometry g(shape, tps);
  const uint64_t expected = (inline_tables ? g.slices() : 0) + uint64_t{g.slices()} * g.sub_chunks;
  if (info.num_streams != expected) {
    return InvalidArgument("cachegen chunk has " + std::to_string(info.num_streams) + " streams, its shape needs " +
                           std::to_string(expected));
  }

  std::vector<SliceTables> inline_slices;
  const std::vector<SliceTables>* slices = nullptr;
  if (inline_tables) {
    inline_slices.resize(g.slices());
    std::vector<Status> statuses(g.slices());
    RunParallel(options.executor, g.slices(), [&](size_t lk) {
      Result<std::span<const std::byte>> bytes = StreamBytes(in, static_cast<uint32_t>(lk));
      if (!bytes.ok()) {
        statuses[lk] = bytes.status();
        return;
      }
      size_t pos = 1;
      const uint32_t kinds = anchor_delta ? 2 : 1;
      if (bytes->empty() ||
          !ParseSliceTables(*bytes, pos, static_cast<uint8_t>((*bytes)[0]), kinds, g.width, WeightCodes::kNibble,
                            inline_slices[lk]) ||
          pos != bytes->size()) {
        statuses[lk] = InvalidArgument("cachegen table stream " + std::to_string(lk) + " is malformed");
      }
    });
    KVTIER_RETURN_IF_ERROR(FirstError(statuses));
    slices = &inline_slices;
  } else {
    const ModelProfile* profile = options.profiles ? options.profiles(in.params.profile_id) : nullptr;
    if (profile == nullptr) return NotFound("unknown cachegen profile " + HexId(in.params.profile_id));
    if (!ProfileMatches(*profile, shape)) return ProfileMismatch(*profile, shape);
    slices = &profile->tables().levels[level - 1];
  }

  const size_t first_data = inline_tables ? g.slices() : 0;
  const size_t n = size_t{g.slices()} * g.sub_chunks;
  std::vector<Status> statuses(n);
  RunParallel(options.executor, n, [&](size_t i) {
    const uint32_t index = static_cast<uint32_t>(first_data + i);
    Result<std::span<const std::byte>> bytes = StreamBytes(in, index);
    if (!bytes.ok()) {
      statuses[i] = bytes.status();
      return;
    }
    const uint32_t lk = static_cast<uint32_t>(i / g.sub_chunks);
    const uint32_t sc = static_cast<uint32_t>(i % g.sub_chunks);
    const uint32_t t0 = sc * tps;
    const uint32_t t1 = std::min(g.tokens, t0 + tps);
    statuses[i] = DecodeDataStream(*bytes, index, (*slices)[lk], g, anchor_delta, shape.dtype, lk, t0, t1, out);
  });
  return FirstError(statuses);
}

}  // namespace kvtier::codec::internal
