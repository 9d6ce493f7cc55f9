#include "kvtier/gpu/rope.h"

#include <cmath>
#include <string>
#include <vector>

#include "checks.h"
#include "element_math.h"

namespace kvtier::gpu {

Status RopeParams::Validate(uint32_t head_dim) const {
  if (style != RopeStyle::kNeox && style != RopeStyle::kGptj) {
    return InvalidArgument("rope style must be NeoX or GPT-J to re-rotate keys");
  }
  if (rotary_dim == 0 || rotary_dim % 2 != 0) {
    return InvalidArgument("rotary_dim " + std::to_string(rotary_dim) + " must be even and > 0");
  }
  if (rotary_dim > head_dim) {
    return InvalidArgument("rotary_dim " + std::to_string(rotary_dim) + " exceeds head_dim " +
                           std::to_string(head_dim));
  }
  if (!(theta > 0.0) || !std::isfinite(theta)) return InvalidArgument("rope theta must be finite and > 0");
  return Status::Ok();
}

RopeParams RopeParams::FromFingerprint(const ModelFingerprint& fp) {
  return RopeParams{fp.rope_style, fp.rotary_dim, fp.rope_theta};
}

void RotationTable(const RopeParams& rope, int64_t delta, std::span<float> cos, std::span<float> sin) {
  // The expression of client/src/rope.cc, term for term, so the tables are identical.
  for (uint32_t i = 0; i < rope.rotary_dim / 2 && i < cos.size() && i < sin.size(); ++i) {
    const double frequency = std::pow(rope.theta, -2.0 * i / rope.rotary_dim);
    const double angle = static_cast<double>(delta) * frequency;
    cos[i] = static_cast<float>(std::cos(angle));
    sin[i] = static_cast<float>(std::sin(angle));
  }
}

Status ChunkShape::Validate() const {
  if (num_layers == 0) return InvalidArgument("num_layers is 0");
  if (num_tokens == 0) return InvalidArgument("num_tokens is 0");
  if (num_kv_heads == 0) return InvalidArgument("num_kv_heads is 0");
  if (head_dim == 0) return InvalidArgument("head_dim is 0");
  if (DTypeBytes(dtype) == 0) return InvalidArgument("dtype must be fp16, bf16 or fp32");
  return Status::Ok();
}

uint64_t ChunkShape::Bytes() const {
  return uint64_t{num_layers} * 2 * num_tokens * num_kv_heads * head_dim * DTypeBytes(dtype);
}

Status RerotateChunkKeysCpu(const ChunkShape& shape, const RopeParams& rope, int64_t delta,
                            std::span<std::byte> chunk) {
  KVTIER_RETURN_IF_ERROR(detail::CheckRerotateCall(shape, rope, chunk.data(), chunk.size(), false));
  if (delta == 0) return Status::Ok();
  const uint32_t pairs = rope.rotary_dim / 2;
  std::vector<float> cos(pairs), sin(pairs);
  RotationTable(rope, delta, cos, sin);
  const uint8_t type = detail::ElementTypeOf(shape.dtype);
  const uint32_t elem = static_cast<uint32_t>(DTypeBytes(shape.dtype));
  const uint64_t head_bytes = uint64_t{shape.head_dim} * elem;
  const uint64_t row_bytes = head_bytes * shape.num_kv_heads;
  const bool neox = rope.style == RopeStyle::kNeox;
  auto* base = reinterpret_cast<unsigned char*>(chunk.data());
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    unsigned char* keys = base + uint64_t{l} * 2 * shape.num_tokens * row_bytes;  // [layer][K] before [layer][V]
    for (uint32_t t = 0; t < shape.num_tokens; ++t) {
      for (uint32_t h = 0; h < shape.num_kv_heads; ++h) {
        unsigned char* head = keys + t * row_bytes + h * head_bytes;
        for (uint32_t i = 0; i < pairs; ++i) {
          detail::RotateHeadItem(head, head, i, type, elem, neox, rope.rotary_dim, cos.data(), sin.data());
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu
