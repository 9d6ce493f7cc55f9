// kivi2: KIVI-style 2-bit quantization. Keys per channel (kv_head, dim) over groups of 32 tokens,
// values per (token, kv_head); both asymmetric with fp16 scale and zero point (quant.h). One stream
// per layer (C = heads * dim, G = ceil(T / 32)):
//   [K params: G x C x (scale f16, zero f16) as two arrays per group][V params: T x H x (scale, zero)]
//   [K codes: T x C x 2 bits][V codes: T x C x 2 bits]   (codes token-major, 4 per byte, LSB first)
#include <algorithm>
#include <vector>

#include "codec_impl.h"
#include "float_convert.h"
#include "quant.h"

namespace kvtier::codec::internal {
namespace {

constexpr uint32_t kGroup = 32;
constexpr int kQmax = 3;

struct Layout {
  uint64_t tokens, heads, dim, elem;
  uint64_t C() const { return heads * dim; }
  uint64_t Groups() const { return (tokens + kGroup - 1) / kGroup; }
  uint64_t KParamsAt(uint64_t g) const { return g * C() * 4; }
  uint64_t VParamsAt(uint64_t t, uint64_t h) const { return Groups() * C() * 4 + (t * heads + h) * 4; }
  uint64_t CodeBytes() const { return PackedBytes(tokens * C(), 2); }
  uint64_t KCodesAt() const { return Groups() * C() * 4 + tokens * heads * 4; }
  uint64_t VCodesAt() const { return KCodesAt() + CodeBytes(); }
  uint64_t StreamBytes() const { return VCodesAt() + CodeBytes(); }
  uint64_t RawAt(uint64_t layer, int kv, uint64_t t) const { return ((layer * 2 + kv) * tokens + t) * C() * elem; }
};

Layout LayoutOf(const KvShape& s) { return {s.num_tokens, s.num_kv_heads, s.head_dim, DTypeBytes(s.dtype)}; }

Status CheckRow(const float* x, size_t n, uint32_t layer, int kv, uint32_t t, RowStats* out = nullptr) {
  const RowStats st = ScanRow(x, n);
  if (!st.finite) return NonFiniteError("kivi2", layer, kv, t);
  if (st.absmax > kMaxHalf) return OutOfHalfRangeError("kivi2", layer, kv, t);
  if (out) *out = st;
  return Status::Ok();
}

Status EncodeLayer(const KvView& kv, const Layout& lay, uint32_t layer, std::vector<std::byte>& dst) {
  const uint64_t C = lay.C(), T = lay.tokens;
  dst.assign(lay.StreamBytes(), std::byte{0});
  std::vector<float> block(std::min<uint64_t>(T, kGroup) * C), lo(C), hi(C), zero(C), inv(C);
  std::vector<uint8_t> codes(T * C);
  // Keys: per channel over each group of up to 32 tokens.
  for (uint64_t g = 0; g < lay.Groups(); ++g) {
    const uint64_t t0 = g * kGroup, n = std::min<uint64_t>(kGroup, T - t0);
    ToFloat(kv.data.data() + lay.RawAt(layer, 0, t0), kv.shape.dtype, n * C, block.data());
    for (uint64_t r = 0; r < n; ++r) {
      KVTIER_RETURN_IF_ERROR(CheckRow(block.data() + r * C, C, layer, 0, static_cast<uint32_t>(t0 + r)));
    }
    std::copy_n(block.data(), C, lo.data());
    std::copy_n(block.data(), C, hi.data());
    for (uint64_t r = 1; r < n; ++r) {
      const float* x = block.data() + r * C;
      for (uint64_t c = 0; c < C; ++c) {
        lo[c] = x[c] < lo[c] ? x[c] : lo[c];
        hi[c] = x[c] > hi[c] ? x[c] : hi[c];
      }
    }
    std::byte* params = dst.data() + lay.KParamsAt(g);
    for (uint64_t c = 0; c < C; ++c) {
      const AsymParams p = ChooseAsym(lo[c], hi[c], kQmax);
      Store<uint16_t>(params + 2 * c, p.scale_h);
      Store<uint16_t>(params + 2 * (C + c), p.zero_h);
      zero[c] = HalfToFloat(p.zero_h);
      inv[c] = InverseScale(HalfToFloat(p.scale_h));
    }
    for (uint64_t r = 0; r < n; ++r) {
      const float* x = block.data() + r * C;
      uint8_t* q = codes.data() + (t0 + r) * C;
      QuantizeAsymPerElement(x, zero.data(), inv.data(), C, kQmax, q);
    }
  }
  PackBits(codes.data(), T * C, 2, dst.data() + lay.KCodesAt());
  // Values: per (token, kv_head).
  for (uint64_t t = 0; t < T; ++t) {
    float* x = block.data();
    ToFloat(kv.data.data() + lay.RawAt(layer, 1, t), kv.shape.dtype, C, x);
    KVTIER_RETURN_IF_ERROR(CheckRow(x, C, layer, 1, static_cast<uint32_t>(t)));
    for (uint64_t h = 0; h < lay.heads; ++h) {
      const float* xh = x + h * lay.dim;
      const RowStats st = ScanRow(xh, lay.dim);
      const AsymParams p = ChooseAsym(st.min, st.max, kQmax);
      Store<uint16_t>(dst.data() + lay.VParamsAt(t, h), p.scale_h);
      Store<uint16_t>(dst.data() + lay.VParamsAt(t, h) + 2, p.zero_h);
      const float z = HalfToFloat(p.zero_h), is = InverseScale(HalfToFloat(p.scale_h));
      uint8_t* q = codes.data() + t * C + h * lay.dim;
      QuantizeAsym(xh, lay.dim, z, is, kQmax, q);
    }
  }
  PackBits(codes.data(), T * C, 2, dst.data() + lay.VCodesAt());
  return Status::Ok();
}

Status BadParams(size_t layer, const char* what, uint64_t index) {
  return InvalidArgument("kivi2 stream " + std::to_string(layer) + ": " + what + " " + std::to_string(index) +
                         " has a negative or non-finite scale or a non-finite zero point");
}

Status DecodeLayer(std::span<const std::byte> src, const Layout& lay, DType dtype, size_t layer,
                   std::span<std::byte> out) {
  const uint64_t C = lay.C(), T = lay.tokens;
  std::vector<uint8_t> codes(T * C);
  std::vector<float> row(C), scale(C), zero(C);
  UnpackBits(src.data() + lay.KCodesAt(), T * C, 2, codes.data());
  for (uint64_t g = 0; g < lay.Groups(); ++g) {
    const std::byte* params = src.data() + lay.KParamsAt(g);
    for (uint64_t c = 0; c < C; ++c) {
      const uint16_t sh = Load<uint16_t>(params + 2 * c), zh = Load<uint16_t>(params + 2 * (C + c));
      if (!ValidAsym(sh, zh)) return BadParams(layer, "key group", g);
      scale[c] = HalfToFloat(sh);
      zero[c] = HalfToFloat(zh);
    }
    const uint64_t t0 = g * kGroup, n = std::min<uint64_t>(kGroup, T - t0);
    for (uint64_t t = t0; t < t0 + n; ++t) {
      const uint8_t* q = codes.data() + t * C;
      for (uint64_t c = 0; c < C; ++c) row[c] = static_cast<float>(q[c]) * scale[c] + zero[c];
      if (dtype == DType::kFp16) ClampToHalfRange(row.data(), C);
      FromFloat(row.data(), C, dtype, out.data() + lay.RawAt(layer, 0, t));
    }
  }
  UnpackBits(src.data() + lay.VCodesAt(), T * C, 2, codes.data());
  for (uint64_t t = 0; t < T; ++t) {
    for (uint64_t h = 0; h < lay.heads; ++h) {
      const uint16_t sh = Load<uint16_t>(src.data() + lay.VParamsAt(t, h));
      const uint16_t zh = Load<uint16_t>(src.data() + lay.VParamsAt(t, h) + 2);
      if (!ValidAsym(sh, zh)) return BadParams(layer, "value token", t);
      const float s = HalfToFloat(sh), z = HalfToFloat(zh);
      const uint8_t* q = codes.data() + t * C + h * lay.dim;
      float* x = row.data() + h * lay.dim;
      for (uint64_t d = 0; d < lay.dim; ++d) x[d] = static_cast<float>(q[d]) * s + z;
    }
    if (dtype == DType::kFp16) ClampToHalfRange(row.data(), C);
    FromFloat(row.data(), C, dtype, out.data() + lay.RawAt(layer, 1, t));
  }
  return Status::Ok();
}

}  // namespace

Status EncodeKivi2(const KvView& kv, const EncodeOptions& options, EncodedStreams& out) {
  const Layout lay = LayoutOf(kv.shape);
  out.streams.resize(kv.shape.num_layers);
  return RunParallel(options.executor, kv.shape.num_layers, [&](size_t layer) {
    return EncodeLayer(kv, lay, static_cast<uint32_t>(layer), out.streams[layer]);
  });
}

Status DecodeKivi2(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options) {
  const KvShape& s = in.info.shape;
  const Layout lay = LayoutOf(s);
  if (in.params.codec_param != 0) {
    return InvalidArgument("kivi2 container has codec_param " + std::to_string(in.params.codec_param) + ", must be 0");
  }
  if (in.entries.size() != s.num_layers) {
    return InvalidArgument("kivi2 container has " + std::to_string(in.entries.size()) +
                           " streams, expected one per layer (" + std::to_string(s.num_layers) + ")");
  }
  return RunParallel(options.executor, s.num_layers, [&](size_t layer) -> Status {
    auto src = StreamBytes(in, static_cast<uint32_t>(layer));
    if (!src.ok()) return src.status();
    if (src->size() != lay.StreamBytes()) {
      return InvalidArgument("kivi2 stream " + std::to_string(layer) + " has " + std::to_string(src->size()) +
                             " bytes, expected " + std::to_string(lay.StreamBytes()));
    }
    return DecodeLayer(*src, lay, s.dtype, layer, out);
  });
}

}  // namespace kvtier::codec::internal
