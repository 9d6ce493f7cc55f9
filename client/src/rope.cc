#include "kvtier/client/rope.h"

#include <cmath>
#include <string>
#include <vector>

#include "kvtier/codec/convert.h"

namespace kvtier {
namespace {

// cos and sin of delta x frequency for each rotary pair; frequency_i = theta^(-2i / rotary_dim). In double:
// a large shift times a small frequency keeps its precision.
struct PairRotation {
  std::vector<float> cos, sin;
};

PairRotation RotationFor(const ModelFingerprint& fp, int64_t delta) {
  const uint32_t pairs = fp.rotary_dim / 2;
  PairRotation r{std::vector<float>(pairs), std::vector<float>(pairs)};
  for (uint32_t i = 0; i < pairs; ++i) {
    const double frequency = std::pow(fp.rope_theta, -2.0 * i / fp.rotary_dim);
    const double angle = static_cast<double>(delta) * frequency;
    r.cos[i] = static_cast<float>(std::cos(angle));
    r.sin[i] = static_cast<float>(std::sin(angle));
  }
  return r;
}

void RotateHead(const ModelFingerprint& fp, const PairRotation& r, float* head) {
  const uint32_t pairs = fp.rotary_dim / 2;
  for (uint32_t i = 0; i < pairs; ++i) {
    // NeoX pairs dim i with i + rotary_dim/2; GPT-J pairs neighbours.
    const uint32_t a = fp.rope_style == RopeStyle::kNeox ? i : 2 * i;
    const uint32_t b = fp.rope_style == RopeStyle::kNeox ? i + pairs : 2 * i + 1;
    const float x = head[a], y = head[b];
    head[a] = x * r.cos[i] - y * r.sin[i];
    head[b] = x * r.sin[i] + y * r.cos[i];
  }
}

}  // namespace

void RerotateHead(const ModelFingerprint& fingerprint, int64_t delta, std::span<float> head) {
  if (fingerprint.rope_style == RopeStyle::kNone || delta == 0) return;
  RotateHead(fingerprint, RotationFor(fingerprint, delta), head.data());
}

Status RerotateKeys(const ModelFingerprint& fp, uint32_t num_tokens, int64_t delta, std::span<std::byte> kv) {
  KVTIER_RETURN_IF_ERROR(fp.Validate());
  if (fp.rope_style == RopeStyle::kNone) return InvalidArgument("the model has no RoPE: keys need no re-rotation");
  if (!fp.keys_post_rope) {
    return InvalidArgument("keys are stored before RoPE: apply RoPE at the new positions instead of re-rotating");
  }
  if (kv.size() != uint64_t{num_tokens} * fp.KvBytesPerToken()) {
    return InvalidArgument("KV of " + std::to_string(kv.size()) + " bytes is not " + std::to_string(num_tokens) +
                           " tokens x " + std::to_string(fp.KvBytesPerToken()) + " bytes");
  }
  if (delta == 0) return Status::Ok();
  const PairRotation rotation = RotationFor(fp, delta);
  const size_t elem = DTypeBytes(fp.dtype);
  const size_t row = size_t{fp.num_kv_heads} * fp.head_dim;        // one token's K, in elements
  const size_t half = size_t{num_tokens} * row * elem;               // K (or V) of one layer, in bytes
  std::vector<float> values(row);
  for (uint32_t layer = 0; layer < fp.num_layers; ++layer) {
    std::byte* keys = kv.data() + size_t{layer} * 2 * half;          // [layer][K] comes before [layer][V]
    for (uint32_t t = 0; t < num_tokens; ++t) {
      const std::span<std::byte> bytes{keys + size_t{t} * row * elem, row * elem};
      codec::ElementsToFloat(bytes, fp.dtype, values);
      for (uint32_t h = 0; h < fp.num_kv_heads; ++h) RotateHead(fp, rotation, values.data() + size_t{h} * fp.head_dim);
      codec::FloatToElements(values, fp.dtype, bytes);
    }
  }
  return Status::Ok();
}

}  // namespace kvtier
