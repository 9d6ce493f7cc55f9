// Device entry points of paged_kv.h and rope.h: the shared argument checks, then the launch parameters.
#include <algorithm>
#include <cstring>
#include <string>

#include "checks.h"
#include "cuda_kernels.h"
#include "element_math.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/paged_kv.h"
#include "kvtier/gpu/rope.h"

namespace kvtier::gpu {
namespace {

static_assert(detail::kLaunchLayers == kMaxLayersPerLaunch);
static_assert(detail::kLaunchPairs * 2 == kMaxDeviceRotaryDim);

Status RequireGpu() {
  if (!GpuAvailable()) return Unavailable("no usable GPU: " + CachedProbe().reason);
  return Status::Ok();
}

void FillRope(const RopeParams& rope, int64_t delta, detail::RopeTable& table) {
  table.neox = rope.style == RopeStyle::kNeox;
  table.rotary_dim = rope.rotary_dim;
  RotationTable(rope, delta, std::span<float>(table.cos, rope.rotary_dim / 2),
                std::span<float>(table.sin, rope.rotary_dim / 2));
}

// The widest unit (16, 8, 4, 2 bytes) dividing the row size and every base pointer of the call.
uint32_t VectorBytes(const PagedKvCache& cache, const void* chunk) {
  uintptr_t bits = static_cast<uintptr_t>(cache.shape.RowBytes()) | reinterpret_cast<uintptr_t>(chunk);
  for (void* p : cache.k_layers) bits |= reinterpret_cast<uintptr_t>(p);
  for (void* p : cache.v_layers) bits |= reinterpret_cast<uintptr_t>(p);
  for (uint32_t width : {16u, 8u, 4u}) {
    if (bits % width == 0) return width;
  }
  return 2;
}

Status LaunchPagedKv(const PagedKvCache& cache, const SequenceSlice& seq, unsigned char* chunk, bool unpack,
                     const UnpackOptions& options, StreamHandle stream) {
  const PagedKvShape& s = cache.shape;
  detail::PagedKvParams p{};
  p.block_table = seq.block_table;
  p.num_blocks = s.num_blocks;
  p.block_size = s.block_size;
  p.first_token = seq.first_token;
  p.num_tokens = seq.num_tokens;
  p.num_kv_heads = s.num_kv_heads;
  p.head_dim = s.head_dim;
  p.elem_bytes = static_cast<uint32_t>(DTypeBytes(s.dtype));
  p.elem_type = detail::ElementTypeOf(s.dtype);
  p.unpack = unpack;
  p.rotate = unpack && options.rerotate_delta != 0;
  p.row_bytes = s.RowBytes();
  if (p.rotate) FillRope(options.rope, options.rerotate_delta, p.rope);
  const uint32_t vector_bytes = VectorBytes(cache, chunk);
  for (uint32_t first = 0; first < s.num_layers; first += kMaxLayersPerLaunch) {
    p.num_layers = std::min(kMaxLayersPerLaunch, s.num_layers - first);
    for (uint32_t l = 0; l < p.num_layers; ++l) {
      p.k_layers[l] = static_cast<unsigned char*>(cache.k_layers[first + l]);
      p.v_layers[l] = static_cast<unsigned char*>(cache.v_layers[first + l]);
    }
    p.chunk = chunk + s.ChunkBytes(seq.num_tokens) / s.num_layers * first;
    const std::string error = detail::LaunchPagedKv(p, vector_bytes, stream);
    if (!error.empty()) return Internal(error);
  }
  return Status::Ok();
}

}  // namespace

Status PackPagedKv(const PagedKvCache& cache, const SequenceSlice& seq, std::span<std::byte> chunk,
                   StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(detail::CheckPagedCall(cache, seq, chunk.data(), chunk.size(), false, false));
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  return LaunchPagedKv(cache, seq, reinterpret_cast<unsigned char*>(chunk.data()), false, UnpackOptions{}, stream);
}

Status UnpackPagedKv(const PagedKvCache& cache, const SequenceSlice& seq, std::span<const std::byte> chunk,
                     const UnpackOptions& options, StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(detail::CheckPagedCall(cache, seq, chunk.data(), chunk.size(), false, true));
  KVTIER_RETURN_IF_ERROR(detail::CheckUnpackOptions(options, cache.shape, true));
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  // The kernel only reads the chunk when unpacking; the parameter block has one pointer type for both ways.
  auto* data = const_cast<unsigned char*>(reinterpret_cast<const unsigned char*>(chunk.data()));
  return LaunchPagedKv(cache, seq, data, true, options, stream);
}

Status RerotateChunkKeys(const ChunkShape& shape, const RopeParams& rope, int64_t delta, std::span<std::byte> chunk,
                         StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(detail::CheckRerotateCall(shape, rope, chunk.data(), chunk.size(), true));
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  if (delta == 0) return Status::Ok();
  detail::RerotateParams p{};
  p.chunk = reinterpret_cast<unsigned char*>(chunk.data());
  p.num_layers = shape.num_layers;
  p.num_tokens = shape.num_tokens;
  p.num_kv_heads = shape.num_kv_heads;
  p.head_dim = shape.head_dim;
  p.elem_bytes = static_cast<uint32_t>(DTypeBytes(shape.dtype));
  p.elem_type = detail::ElementTypeOf(shape.dtype);
  p.row_bytes = uint64_t{shape.num_kv_heads} * shape.head_dim * p.elem_bytes;
  FillRope(rope, delta, p.rope);
  const std::string error = detail::LaunchRerotate(p, stream);
  if (!error.empty()) return Internal(error);
  return Status::Ok();
}

}  // namespace kvtier::gpu
