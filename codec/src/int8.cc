// int8: symmetric 8-bit per (layer, K|V, token) row with an fp32 absmax scale. One stream per layer:
//   [K scales: T x f32][V scales: T x f32][K codes: T x R x i8][V codes: T x R x i8], R = heads * dim.
#include <cmath>
#include <vector>

#include "codec_impl.h"
#include "float_convert.h"
#include "quant.h"

namespace kvtier::codec::internal {
namespace {

struct Layout {
  uint64_t tokens, row, elem;
  uint64_t StreamBytes() const { return 2 * tokens * 4 + 2 * tokens * row; }
  uint64_t ScaleAt(int kv, uint64_t t) const { return (kv * tokens + t) * 4; }
  uint64_t CodesAt(int kv, uint64_t t) const { return 2 * tokens * 4 + (kv * tokens + t) * row; }
  // Offset of the row in the canonical tensor.
  uint64_t RawAt(uint64_t layer, int kv, uint64_t t) const { return ((layer * 2 + kv) * tokens + t) * row * elem; }
};

Layout LayoutOf(const KvShape& s) {
  return {s.num_tokens, uint64_t{s.num_kv_heads} * s.head_dim, DTypeBytes(s.dtype)};
}

}  // namespace

Status EncodeInt8(const KvView& kv, const EncodeOptions& options, EncodedStreams& out) {
  const KvShape& s = kv.shape;
  const Layout lay = LayoutOf(s);
  out.streams.resize(s.num_layers);
  return RunParallel(options.executor, s.num_layers, [&](size_t layer) -> Status {
    std::vector<float> row(lay.row);
    auto& dst = out.streams[layer];
    dst.resize(lay.StreamBytes());
    for (int k = 0; k < 2; ++k) {
      for (uint32_t t = 0; t < s.num_tokens; ++t) {
        ToFloat(kv.data.data() + lay.RawAt(layer, k, t), s.dtype, lay.row, row.data());
        const RowStats st = ScanRow(row.data(), lay.row);
        if (!st.finite) return NonFiniteError("int8", static_cast<uint32_t>(layer), k, t);
        Store<float>(dst.data() + lay.ScaleAt(k, t), st.absmax);
        QuantizeInt8(row.data(), lay.row, st.absmax, reinterpret_cast<int8_t*>(dst.data() + lay.CodesAt(k, t)));
      }
    }
    return Status::Ok();
  });
}

Status DecodeInt8(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options) {
  const KvShape& s = in.info.shape;
  const Layout lay = LayoutOf(s);
  if (in.params.codec_param != 0) {
    return InvalidArgument("int8 container has codec_param " + std::to_string(in.params.codec_param) + ", must be 0");
  }
  if (in.entries.size() != s.num_layers) {
    return InvalidArgument("int8 container has " + std::to_string(in.entries.size()) + " streams, expected one per layer (" +
                           std::to_string(s.num_layers) + ")");
  }
  return RunParallel(options.executor, s.num_layers, [&](size_t layer) -> Status {
    auto src = StreamBytes(in, static_cast<uint32_t>(layer));
    if (!src.ok()) return src.status();
    if (src->size() != lay.StreamBytes()) {
      return InvalidArgument("int8 stream " + std::to_string(layer) + " has " + std::to_string(src->size()) +
                             " bytes, expected " + std::to_string(lay.StreamBytes()));
    }
    std::vector<float> row(lay.row);
    for (int k = 0; k < 2; ++k) {
      for (uint32_t t = 0; t < s.num_tokens; ++t) {
        const float scale = Load<float>(src->data() + lay.ScaleAt(k, t));
        if (!(std::isfinite(scale) && scale >= 0.0f)) {
          return InvalidArgument("int8 stream " + std::to_string(layer) + ": scale of token " + std::to_string(t) +
                                 " is negative or not finite");
        }
        DequantizeInt8(reinterpret_cast<const int8_t*>(src->data() + lay.CodesAt(k, t)), lay.row, scale, row.data());
        FromFloat(row.data(), lay.row, s.dtype, out.data() + lay.RawAt(layer, k, t));
      }
    }
    return Status::Ok();
  });
}

}  // namespace kvtier::codec::internal
