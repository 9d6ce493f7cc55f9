// Argument checks of the int8 dequantization, direct gather and low-rank key kernels (checks.h).
#include <cmath>
#include <cstring>
#include <string>

#include "checks.h"

namespace kvtier::gpu::detail {
namespace {

std::string Str(uint64_t v) { return std::to_string(v); }

bool Aligned(const void* p, size_t alignment) { return reinterpret_cast<uintptr_t>(p) % alignment == 0; }

Status CheckOutput(DType dtype, const void* out, size_t out_bytes, uint64_t expected, const char* what) {
  if (out_bytes != expected) {
    return InvalidArgument(std::string(what) + " output of " + Str(out_bytes) + " bytes is not the " +
                           Str(expected) + " bytes its shape needs");
  }
  if (out == nullptr) return InvalidArgument("output is null");
  const size_t elem = DTypeBytes(dtype);
  if (!Aligned(out, elem)) return InvalidArgument("output is not aligned to the " + Str(elem) + "-byte element");
  return Status::Ok();
}

}  // namespace

Status CheckInt8Call(const Int8Payload& payload, DType out_dtype, const void* out, size_t out_bytes) {
  KVTIER_RETURN_IF_ERROR(payload.shape.Validate());
  const uint64_t body = uint64_t{payload.shape.num_layers} * Int8StreamBytes(payload.shape);
  if (payload.body.size() != body) {
    return InvalidArgument("int8 body of " + Str(payload.body.size()) + " bytes is not " +
                           Str(payload.shape.num_layers) + " streams of " + Str(Int8StreamBytes(payload.shape)) +
                           " bytes");
  }
  if (payload.body.data() == nullptr) return InvalidArgument("int8 body is null");
  if (DTypeBytes(out_dtype) == 0) return InvalidArgument("output dtype must be fp16, bf16 or fp32");
  return CheckOutput(out_dtype, out, out_bytes, Int8OutputBytes(payload.shape, out_dtype), "int8");
}

Status CheckInt8Scales(const Int8Payload& payload) {
  const ChunkShape& s = payload.shape;
  const uint64_t stream = Int8StreamBytes(s);
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    for (uint64_t i = 0; i < 2 * uint64_t{s.num_tokens}; ++i) {
      float scale;
      std::memcpy(&scale, payload.body.data() + l * stream + 4 * i, 4);
      if (!(std::isfinite(scale) && scale >= 0.0f)) {
        // The codec's message (codec/src/int8.cc): it names the layer's stream and the token.
        return InvalidArgument("int8 stream " + Str(l) + ": scale of token " + Str(i % s.num_tokens) +
                               " is negative or not finite");
      }
    }
  }
  return Status::Ok();
}

Status CheckGatherCall(const BlockGather& g, const void* out, size_t out_bytes, bool ids_on_host) {
  if (g.num_blocks == 0) return InvalidArgument("num_blocks is 0");
  if (g.block_bytes == 0) return InvalidArgument("block_bytes is 0");
  if (g.num_selected == 0) return InvalidArgument("num_selected is 0");
  if (g.source == nullptr) return InvalidArgument("source is null");
  if (g.block_ids == nullptr) return InvalidArgument("block_ids is null");
  // A misaligned read on the GPU is a sticky error that ends the process's CUDA context: refuse it here.
  if (!Aligned(g.block_ids, alignof(int32_t))) return InvalidArgument("block_ids is not 4-byte aligned");
  if (out_bytes != GatherOutputBytes(g)) {
    return InvalidArgument("gather output of " + Str(out_bytes) + " bytes is not " + Str(g.num_selected) +
                           " blocks x " + Str(g.block_bytes) + " bytes = " + Str(GatherOutputBytes(g)));
  }
  if (out == nullptr) return InvalidArgument("output is null");
  if (!ids_on_host) return Status::Ok();
  for (uint32_t i = 0; i < g.num_selected; ++i) {
    const int32_t id = g.block_ids[i];
    if (id < 0 || static_cast<uint32_t>(id) >= g.num_blocks) {
      return InvalidArgument("block_ids[" + Str(i) + "] = " + std::to_string(id) + " is outside the source's " +
                             Str(g.num_blocks) + " blocks");
    }
  }
  return Status::Ok();
}

Status CheckReconstructCall(const LowRankKeysView& keys, const KeyBlockSelection& sel, const RopeParams& rope,
                            DType dtype, const void* out, size_t out_bytes, bool on_device) {
  const LowRankShape& s = keys.shape;
  KVTIER_RETURN_IF_ERROR(s.Validate());
  KVTIER_RETURN_IF_ERROR(rope.Validate(s.head_dim));
  if (on_device && rope.rotary_dim > kMaxDeviceRotaryDim) {
    return InvalidArgument("rotary_dim " + Str(rope.rotary_dim) + " exceeds the device kernels' limit of " +
                           Str(kMaxDeviceRotaryDim));
  }
  if (keys.a == nullptr || keys.b == nullptr) return InvalidArgument("factor a or b is null");
  // Misaligned reads on the GPU are sticky errors that end the process's CUDA context: refuse them here.
  if (!Aligned(keys.a, alignof(float)) || !Aligned(keys.b, alignof(float))) {
    return InvalidArgument("factor a or b is not 4-byte aligned");
  }
  if (sel.block_size == 0) return InvalidArgument("block_size is 0");
  if (sel.num_selected == 0) return InvalidArgument("num_selected is 0");
  if (sel.block_ids == nullptr) return InvalidArgument("block_ids is null");
  if (!Aligned(sel.block_ids, alignof(int32_t))) return InvalidArgument("block_ids is not 4-byte aligned");
  constexpr int64_t kMaxPosition = int64_t{1} << 31;
  if (sel.first_position < 0 || sel.first_position > kMaxPosition - s.num_tokens) {
    return InvalidArgument("first_position " + std::to_string(sel.first_position) + " is outside [0, 2^31 - " +
                           Str(s.num_tokens) + "]");
  }
  if (DTypeBytes(dtype) == 0) return InvalidArgument("output dtype must be fp16, bf16 or fp32");
  KVTIER_RETURN_IF_ERROR(CheckOutput(dtype, out, out_bytes, ReconstructOutputBytes(s, sel, dtype), "reconstruct"));
  if (on_device) return Status::Ok();
  const uint64_t blocks = (uint64_t{s.num_tokens} + sel.block_size - 1) / sel.block_size;
  for (uint32_t i = 0; i < sel.num_selected; ++i) {
    const int32_t id = sel.block_ids[i];
    if (id < 0 || static_cast<uint64_t>(id) >= blocks) {
      return InvalidArgument("block_ids[" + Str(i) + "] = " + std::to_string(id) + " is outside the chunk's " +
                             Str(blocks) + " blocks of " + Str(sel.block_size) + " tokens");
    }
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu::detail
