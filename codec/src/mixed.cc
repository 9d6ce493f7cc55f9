// mixed: the most important tokens at int8 (as in the int8 codec), the rest at 2..4 bits asymmetric
// with fp16 scale and zero point (as kivi2's value rows, over the whole row). Streams:
//   0: bitmap, ceil(T / 8) bytes, bit t (LSB first) set when token t is kept at 8 bits
//   1 + l: layer l, rows in order K token 0..T-1 then V token 0..T-1, each row either
//          [scale f32][R x i8] (8-bit token) or [scale f16][zero f16][R x b bits, LSB first] (the rest)
// codec_param: bits 0..7 = b (2, 3, 4); bits 8..21 = the top fraction in units of 1/10000.
#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <vector>

#include "codec_impl.h"
#include "float_convert.h"
#include "quant.h"

namespace kvtier::codec::internal {
namespace {

constexpr uint32_t kFractionUnits = 10000;

uint64_t TopCount(uint32_t fraction_units, uint64_t tokens) {
  return (uint64_t{fraction_units} * tokens + kFractionUnits - 1) / kFractionUnits;
}

struct Layout {
  uint64_t tokens, row, elem;
  int bits;
  uint64_t HighBytes() const { return 4 + row; }
  uint64_t LowBytes() const { return 4 + PackedBytes(row, bits); }
  uint64_t RawAt(uint64_t layer, int kv, uint64_t t) const { return ((layer * 2 + kv) * tokens + t) * row * elem; }
};

// Offsets of each token's row inside one K (or V) half of a layer stream, plus the half's size.
std::vector<uint64_t> RowOffsets(const Layout& lay, const std::vector<uint8_t>& high, uint64_t* half_bytes) {
  std::vector<uint64_t> at(lay.tokens);
  uint64_t off = 0;
  for (uint64_t t = 0; t < lay.tokens; ++t) {
    at[t] = off;
    off += high[t] ? lay.HighBytes() : lay.LowBytes();
  }
  *half_bytes = off;
  return at;
}

// Σ over layers of the L2 norm of the token's K row.
Result<std::vector<float>> KeyNormImportance(const KvView& kv, const Layout& lay, Executor* executor) {
  const KvShape& s = kv.shape;
  std::vector<std::vector<float>> per_layer(s.num_layers, std::vector<float>(s.num_tokens));
  Status st = RunParallel(executor, s.num_layers, [&](size_t layer) -> Status {
    std::vector<float> row(lay.row);
    for (uint32_t t = 0; t < s.num_tokens; ++t) {
      ToFloat(kv.data.data() + lay.RawAt(layer, 0, t), s.dtype, lay.row, row.data());
      if (!ScanRow(row.data(), lay.row).finite) return NonFiniteError("mixed", static_cast<uint32_t>(layer), 0, t);
      double sum = 0.0;
      for (float x : row) sum += double{x} * x;
      per_layer[layer][t] = static_cast<float>(std::sqrt(sum));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  std::vector<float> importance(s.num_tokens, 0.0f);
  for (const auto& l : per_layer) {
    for (uint32_t t = 0; t < s.num_tokens; ++t) importance[t] += l[t];
  }
  return importance;
}

Status EncodeLayer(const KvView& kv, const Layout& lay, const std::vector<uint8_t>& high,
                   const std::vector<uint64_t>& at, uint64_t half, uint32_t layer, std::vector<std::byte>& dst) {
  const int qmax = (1 << lay.bits) - 1;
  dst.assign(2 * half, std::byte{0});
  std::vector<float> row(lay.row);
  std::vector<uint8_t> codes(lay.row);
  for (int k = 0; k < 2; ++k) {
    for (uint32_t t = 0; t < lay.tokens; ++t) {
      ToFloat(kv.data.data() + lay.RawAt(layer, k, t), kv.shape.dtype, lay.row, row.data());
      const RowStats st = ScanRow(row.data(), lay.row);
      if (!st.finite) return NonFiniteError("mixed", layer, k, t);
      std::byte* p = dst.data() + k * half + at[t];
      if (high[t]) {
        Store<float>(p, st.absmax);
        QuantizeInt8(row.data(), lay.row, st.absmax, reinterpret_cast<int8_t*>(p + 4));
        continue;
      }
      if (st.absmax > kMaxHalf) return OutOfHalfRangeError("mixed", layer, k, t);
      const AsymParams ap = ChooseAsym(st.min, st.max, qmax);
      Store<uint16_t>(p, ap.scale_h);
      Store<uint16_t>(p + 2, ap.zero_h);
      const float z = HalfToFloat(ap.zero_h), inv = InverseScale(HalfToFloat(ap.scale_h));
      QuantizeAsym(row.data(), lay.row, z, inv, qmax, codes.data());
      PackBits(codes.data(), lay.row, lay.bits, p + 4);
    }
  }
  return Status::Ok();
}

Status DecodeLayer(std::span<const std::byte> src, const Layout& lay, const std::vector<uint8_t>& high,
                   const std::vector<uint64_t>& at, uint64_t half, DType dtype, size_t layer,
                   std::span<std::byte> out) {
  std::vector<float> row(lay.row);
  std::vector<uint8_t> codes(lay.row);
  for (int k = 0; k < 2; ++k) {
    for (uint64_t t = 0; t < lay.tokens; ++t) {
      const std::byte* p = src.data() + k * half + at[t];
      if (high[t]) {
        const float scale = Load<float>(p);
        if (!(std::isfinite(scale) && scale >= 0.0f)) {
          return InvalidArgument("mixed stream " + std::to_string(layer + 1) + ": 8-bit scale of token " +
                                 std::to_string(t) + " is negative or not finite");
        }
        DequantizeInt8(reinterpret_cast<const int8_t*>(p + 4), lay.row, scale, row.data());
      } else {
        const uint16_t sh = Load<uint16_t>(p), zh = Load<uint16_t>(p + 2);
        if (!ValidAsym(sh, zh)) {
          return InvalidArgument("mixed stream " + std::to_string(layer + 1) + ": low-bit parameters of token " +
                                 std::to_string(t) + " are negative or not finite");
        }
        const float s = HalfToFloat(sh), z = HalfToFloat(zh);
        UnpackBits(p + 4, lay.row, lay.bits, codes.data());
        for (uint64_t i = 0; i < lay.row; ++i) row[i] = static_cast<float>(codes[i]) * s + z;
        if (dtype == DType::kFp16) ClampToHalfRange(row.data(), lay.row);
      }
      FromFloat(row.data(), lay.row, dtype, out.data() + lay.RawAt(layer, k, t));
    }
  }
  return Status::Ok();
}

}  // namespace

Status EncodeMixed(const KvView& kv, const EncodeOptions& options, EncodedStreams& out) {
  const KvShape& s = kv.shape;
  const Layout lay{s.num_tokens, uint64_t{s.num_kv_heads} * s.head_dim, DTypeBytes(s.dtype), options.mixed_low_bits};
  const uint32_t units = static_cast<uint32_t>(std::lround(double{options.mixed_top_fraction} * kFractionUnits));
  out.params.codec_param = static_cast<uint32_t>(options.mixed_low_bits) | units << 8;

  std::vector<float> importance;
  if (!kv.importance.empty()) {
    importance.assign(kv.importance.begin(), kv.importance.end());
  } else {
    auto computed = KeyNormImportance(kv, lay, options.executor);
    if (!computed.ok()) return computed.status();
    importance = std::move(computed).value();
  }
  std::vector<uint32_t> order(s.num_tokens);
  std::iota(order.begin(), order.end(), 0u);
  const uint64_t top = TopCount(units, s.num_tokens);
  std::partial_sort(order.begin(), order.begin() + top, order.end(), [&](uint32_t a, uint32_t b) {
    return importance[a] != importance[b] ? importance[a] > importance[b] : a < b;
  });
  std::vector<uint8_t> high(s.num_tokens, 0);
  for (uint64_t i = 0; i < top; ++i) high[order[i]] = 1;

  out.streams.resize(1 + s.num_layers);
  auto& bitmap = out.streams[0];
  bitmap.assign((s.num_tokens + 7) / 8, std::byte{0});
  for (uint32_t t = 0; t < s.num_tokens; ++t) {
    if (high[t]) bitmap[t / 8] |= std::byte(1u << (t % 8));
  }
  uint64_t half = 0;
  const std::vector<uint64_t> at = RowOffsets(lay, high, &half);
  return RunParallel(options.executor, s.num_layers, [&](size_t layer) {
    return EncodeLayer(kv, lay, high, at, half, static_cast<uint32_t>(layer), out.streams[1 + layer]);
  });
}

Status DecodeMixed(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options) {
  const KvShape& s = in.info.shape;
  const uint32_t param = in.params.codec_param;
  const int bits = static_cast<int>(param & 0xff);
  const uint32_t units = param >> 8;
  if (bits < 2 || bits > 4 || units > kFractionUnits) {
    return InvalidArgument("mixed container codec_param 0x" + std::to_string(param) +
                           " does not hold low bits 2..4 and a fraction <= 10000");
  }
  if (in.entries.size() != uint64_t{s.num_layers} + 1) {
    return InvalidArgument("mixed container has " + std::to_string(in.entries.size()) + " streams, expected " +
                           std::to_string(uint64_t{s.num_layers} + 1) + " (bitmap + one per layer)");
  }
  const Layout lay{s.num_tokens, uint64_t{s.num_kv_heads} * s.head_dim, DTypeBytes(s.dtype), bits};
  auto bitmap = StreamBytes(in, 0);
  if (!bitmap.ok()) return bitmap.status();
  if (bitmap->size() != (uint64_t{s.num_tokens} + 7) / 8) {
    return InvalidArgument("mixed bitmap has " + std::to_string(bitmap->size()) + " bytes, " +
                           std::to_string(s.num_tokens) + " tokens need " + std::to_string((s.num_tokens + 7) / 8));
  }
  std::vector<uint8_t> high(s.num_tokens);
  uint64_t count = 0;
  for (uint32_t t = 0; t < s.num_tokens; ++t) {
    high[t] = (std::to_integer<uint8_t>((*bitmap)[t / 8]) >> (t % 8)) & 1;
    count += high[t];
  }
  const uint64_t set_bits = [&] {
    uint64_t n = 0;
    for (std::byte b : *bitmap) n += std::popcount(std::to_integer<uint8_t>(b));
    return n;
  }();
  if (set_bits != count || count != TopCount(units, s.num_tokens)) {
    return InvalidArgument("mixed bitmap marks " + std::to_string(set_bits) + " tokens, the fraction in the header gives " +
                           std::to_string(TopCount(units, s.num_tokens)));
  }
  uint64_t half = 0;
  const std::vector<uint64_t> at = RowOffsets(lay, high, &half);
  return RunParallel(options.executor, s.num_layers, [&](size_t layer) -> Status {
    auto src = StreamBytes(in, static_cast<uint32_t>(layer + 1));
    if (!src.ok()) return src.status();
    if (src->size() != 2 * half) {
      return InvalidArgument("mixed stream " + std::to_string(layer + 1) + " has " + std::to_string(src->size()) +
                             " bytes, the bitmap gives " + std::to_string(2 * half));
    }
    return DecodeLayer(*src, lay, high, at, half, s.dtype, layer, out);
  });
}

}  // namespace kvtier::codec::internal
