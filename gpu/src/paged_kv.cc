#include "kvtier/gpu/paged_kv.h"

#include <cstring>
#include <vector>

#include "checks.h"
#include "element_math.h"

namespace kvtier::gpu {

Status PagedKvShape::Validate() const {
  if (num_layers == 0) return InvalidArgument("num_layers is 0");
  if (num_blocks == 0) return InvalidArgument("num_blocks is 0");
  if (block_size == 0) return InvalidArgument("block_size is 0");
  if (num_kv_heads == 0) return InvalidArgument("num_kv_heads is 0");
  if (head_dim == 0) return InvalidArgument("head_dim is 0");
  if (DTypeBytes(dtype) == 0) return InvalidArgument("dtype must be fp16, bf16 or fp32");
  return Status::Ok();
}

uint64_t PagedKvShape::RowBytes() const { return uint64_t{num_kv_heads} * head_dim * DTypeBytes(dtype); }

uint64_t PagedKvShape::LayerBytes() const { return uint64_t{num_blocks} * block_size * RowBytes(); }

uint64_t PagedKvShape::ChunkBytes(uint32_t num_tokens) const {
  return uint64_t{num_layers} * 2 * num_tokens * RowBytes();
}

namespace {

// Where the row of (layer, K|V, token t) lives in the paged cache; the caller has checked the block id.
unsigned char* PagedRow(const PagedKvCache& cache, const SequenceSlice& seq, uint32_t layer, int kv, uint32_t t) {
  const PagedKvShape& s = cache.shape;
  const uint64_t pos = uint64_t{seq.first_token} + t;
  const uint64_t block = static_cast<uint64_t>(seq.block_table[pos / s.block_size]);
  auto* base = static_cast<unsigned char*>(kv == 0 ? cache.k_layers[layer] : cache.v_layers[layer]);
  return base + (block * s.block_size + pos % s.block_size) * s.RowBytes();
}

}  // namespace

Status PackPagedKvCpu(const PagedKvCache& cache, const SequenceSlice& seq, std::span<std::byte> chunk) {
  KVTIER_RETURN_IF_ERROR(detail::CheckPagedCall(cache, seq, chunk.data(), chunk.size(), true, false));
  const uint64_t row = cache.shape.RowBytes();
  auto* out = reinterpret_cast<unsigned char*>(chunk.data());
  for (uint32_t l = 0; l < cache.shape.num_layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < seq.num_tokens; ++t, out += row) std::memcpy(out, PagedRow(cache, seq, l, kv, t), row);
    }
  }
  return Status::Ok();
}

Status UnpackPagedKvCpu(const PagedKvCache& cache, const SequenceSlice& seq, std::span<const std::byte> chunk,
                        const UnpackOptions& options) {
  KVTIER_RETURN_IF_ERROR(detail::CheckPagedCall(cache, seq, chunk.data(), chunk.size(), true, true));
  KVTIER_RETURN_IF_ERROR(detail::CheckUnpackOptions(options, cache.shape, false));
  const PagedKvShape& s = cache.shape;
  const uint64_t row = s.RowBytes();
  const bool rotate = options.rerotate_delta != 0;
  const uint32_t pairs = rotate ? options.rope.rotary_dim / 2 : 0;
  std::vector<float> cos(pairs), sin(pairs);
  if (rotate) RotationTable(options.rope, options.rerotate_delta, cos, sin);
  const uint8_t type = detail::ElementTypeOf(s.dtype);
  const uint32_t elem = static_cast<uint32_t>(DTypeBytes(s.dtype));
  const uint64_t head_bytes = uint64_t{s.head_dim} * elem;
  const bool neox = options.rope.style == RopeStyle::kNeox;
  const auto* in = reinterpret_cast<const unsigned char*>(chunk.data());
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < seq.num_tokens; ++t, in += row) {
        unsigned char* dst = PagedRow(cache, seq, l, kv, t);
        if (kv == 1 || !rotate) {
          std::memcpy(dst, in, row);
          continue;
        }
        for (uint32_t h = 0; h < s.num_kv_heads; ++h) {
          // One work item per pair and per copied dim, as the kernel's threads do.
          for (uint32_t item = 0; item < s.head_dim - pairs; ++item) {
            detail::RotateHeadItem(in + h * head_bytes, dst + h * head_bytes, item, type, elem, neox,
                                   options.rope.rotary_dim, cos.data(), sin.data());
          }
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu
