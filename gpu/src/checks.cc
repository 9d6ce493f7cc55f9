#include "checks.h"

#include <cmath>
#include <string>
#include <unordered_map>

#include "element_math.h"

namespace kvtier::gpu::detail {
namespace {

std::string Str(uint64_t v) { return std::to_string(v); }

bool Aligned(const void* p, size_t alignment) { return reinterpret_cast<uintptr_t>(p) % alignment == 0; }

Status CheckLayerPointers(std::span<void* const> layers, const char* name, uint32_t num_layers, size_t elem) {
  if (layers.size() != num_layers) {
    return InvalidArgument(std::string(name) + " has " + Str(layers.size()) + " layer pointers, the shape says " +
                           Str(num_layers) + " layers");
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    if (layers[l] == nullptr) return InvalidArgument(std::string(name) + "[" + Str(l) + "] is null");
    if (!Aligned(layers[l], elem)) {
      return InvalidArgument(std::string(name) + "[" + Str(l) + "] is not aligned to the " + Str(elem) +
                             "-byte element");
    }
  }
  return Status::Ok();
}

Status CheckBlockIds(const PagedKvShape& shape, const SequenceSlice& seq, uint64_t first_block, uint64_t end_block,
                     bool unpack) {
  std::unordered_map<int32_t, uint64_t> seen;  // block id -> table index, for unpack only
  for (uint64_t i = first_block; i < end_block; ++i) {
    const int32_t id = seq.block_table[i];
    if (id < 0 || static_cast<uint64_t>(id) >= shape.num_blocks) {
      return InvalidArgument("block_table[" + Str(i) + "] = " + std::to_string(id) + " is outside the cache's " +
                             Str(shape.num_blocks) + " blocks");
    }
    if (unpack) {
      const auto [it, inserted] = seen.emplace(id, i);
      if (!inserted) {
        return InvalidArgument("block id " + std::to_string(id) + " appears at block_table[" + Str(it->second) +
                               "] and block_table[" + Str(i) + "]: unpack would write one slot twice");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

uint8_t ElementTypeOf(DType dtype) {
  switch (dtype) {
    case DType::kFp16: return kElemFp16;
    case DType::kBf16: return kElemBf16;
    default: return kElemFp32;
  }
}

Status CheckPagedCall(const PagedKvCache& cache, const SequenceSlice& seq, const void* chunk, size_t chunk_bytes,
                      bool table_on_host, bool unpack) {
  const PagedKvShape& shape = cache.shape;
  KVTIER_RETURN_IF_ERROR(shape.Validate());
  const size_t elem = DTypeBytes(shape.dtype);
  KVTIER_RETURN_IF_ERROR(CheckLayerPointers(cache.k_layers, "k_layers", shape.num_layers, elem));
  KVTIER_RETURN_IF_ERROR(CheckLayerPointers(cache.v_layers, "v_layers", shape.num_layers, elem));
  if (seq.num_tokens == 0) return InvalidArgument("num_tokens is 0");
  if (seq.block_table == nullptr) return InvalidArgument("block_table is null");
  // A misaligned read on the GPU is a sticky error that ends the process's CUDA context: refuse it here.
  if (!Aligned(seq.block_table, alignof(int32_t))) return InvalidArgument("block_table is not 4-byte aligned");
  const uint64_t end = uint64_t{seq.first_token} + seq.num_tokens;  // one past the last position
  const uint64_t blocks_needed = (end + shape.block_size - 1) / shape.block_size;
  if (blocks_needed > seq.block_table_size) {
    return InvalidArgument("block table of " + Str(seq.block_table_size) + " entries does not cover position " +
                           Str(end - 1) + " (needs " + Str(blocks_needed) + " entries of " + Str(shape.block_size) +
                           " tokens)");
  }
  const uint64_t expected = shape.ChunkBytes(seq.num_tokens);
  if (chunk_bytes != expected) {
    return InvalidArgument("chunk of " + Str(chunk_bytes) + " bytes is not " + Str(shape.num_layers) +
                           " layers x 2 x " + Str(seq.num_tokens) + " tokens x " + Str(shape.RowBytes()) +
                           " bytes = " + Str(expected));
  }
  if (chunk == nullptr) return InvalidArgument("chunk is null");
  if (!Aligned(chunk, elem)) return InvalidArgument("chunk is not aligned to the " + Str(elem) + "-byte element");
  if (!table_on_host) return Status::Ok();
  return CheckBlockIds(shape, seq, seq.first_token / shape.block_size, blocks_needed, unpack);
}

Status CheckUnpackOptions(const UnpackOptions& options, const PagedKvShape& shape, bool on_device) {
  if (options.rerotate_delta == 0) return Status::Ok();
  KVTIER_RETURN_IF_ERROR(options.rope.Validate(shape.head_dim));
  if (on_device && options.rope.rotary_dim > kMaxDeviceRotaryDim) {
    return InvalidArgument("rotary_dim " + Str(options.rope.rotary_dim) + " exceeds the device kernels' limit of " +
                           Str(kMaxDeviceRotaryDim));
  }
  return Status::Ok();
}

Status CheckRerotateCall(const ChunkShape& shape, const RopeParams& rope, const void* chunk, size_t chunk_bytes,
                         bool on_device) {
  KVTIER_RETURN_IF_ERROR(shape.Validate());
  KVTIER_RETURN_IF_ERROR(rope.Validate(shape.head_dim));
  if (on_device && rope.rotary_dim > kMaxDeviceRotaryDim) {
    return InvalidArgument("rotary_dim " + Str(rope.rotary_dim) + " exceeds the device kernels' limit of " +
                           Str(kMaxDeviceRotaryDim));
  }
  if (chunk_bytes != shape.Bytes()) {
    return InvalidArgument("chunk of " + Str(chunk_bytes) + " bytes is not " + Str(shape.Bytes()) +
                           " bytes for its shape");
  }
  const size_t elem = DTypeBytes(shape.dtype);
  if (chunk == nullptr) return InvalidArgument("chunk is null");
  if (!Aligned(chunk, elem)) return InvalidArgument("chunk is not aligned to the " + Str(elem) + "-byte element");
  return Status::Ok();
}

}  // namespace kvtier::gpu::detail
