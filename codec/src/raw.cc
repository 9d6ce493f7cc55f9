// raw: the canonical bytes as they are, split into streams (one per layer; one in all for small
// chunks) so large chunks copy in parallel. The decoder accepts any split whose lengths add up.
#include <cstring>

#include "codec_impl.h"
#include "quant.h"

namespace kvtier::codec::internal {
namespace {
constexpr uint64_t kOneStreamBelow = 256 << 10;
}  // namespace

Status EncodeRaw(const KvView& kv, const EncodeOptions& options, EncodedStreams& out) {
  const uint64_t total = kv.data.size();
  const uint32_t n = total < kOneStreamBelow ? 1 : kv.shape.num_layers;
  const uint64_t per = total / n;  // layers are equal-sized
  out.streams.resize(n);
  return RunParallel(options.executor, n, [&](size_t i) {
    out.streams[i].assign(kv.data.begin() + i * per, kv.data.begin() + (i + 1) * per);
    return Status::Ok();
  });
}

Status DecodeRaw(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options) {
  if (in.params.codec_param != 0) {
    return InvalidArgument("raw container has codec_param " + std::to_string(in.params.codec_param) + ", must be 0");
  }
  if (in.body.size() != out.size()) {
    return InvalidArgument("raw container body has " + std::to_string(in.body.size()) + " bytes, the shape needs " +
                           std::to_string(out.size()));
  }
  return RunParallel(options.executor, in.entries.size(), [&](size_t i) -> Status {
    auto bytes = StreamBytes(in, static_cast<uint32_t>(i));
    if (!bytes.ok()) return bytes.status();
    if (!bytes->empty()) std::memcpy(out.data() + in.offsets[i], bytes->data(), bytes->size());
    return Status::Ok();
  });
}

}  // namespace kvtier::codec::internal
