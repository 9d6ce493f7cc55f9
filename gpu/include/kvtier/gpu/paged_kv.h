// Pack and unpack between a vLLM-style paged KV cache and kvtier's chunk layout, on the GPU and in a CPU
// twin of identical semantics.
//
// Paged cache: for each layer, K and V each `[num_blocks, block_size, kv_heads, head_dim]` behind their own
// base pointer (as vLLM allocates them). A sequence's token at position p lives in block
// block_table[p / block_size], slot p % block_size. Chunk (DESIGN §2): `[layer][K|V][token][kv_head][head_dim]`
// for num_tokens tokens starting at position first_token. Pack copies paged -> chunk, Unpack chunk -> paged;
// each (layer, K|V, token) is one row of kv_heads * head_dim elements, contiguous on both sides. The first
// and last blocks may be partial and first_token need not be block-aligned.
//
// The kernels cover all layers in one launch (up to kMaxLayersPerLaunch layers; more take one launch per that
// many) and move rows with 16-byte accesses when every base pointer and the row size allow it, else 8, 4 or
// 2 bytes. Unpack can re-rotate K by a position shift while writing (UnpackOptions), with exactly the
// arithmetic of rope.h; V is always copied bit for bit. Pack and unpack without rotation are exact copies.
//
// Ownership: the caller owns every buffer; these are views. Validation: the twins check every block id
// used (range, and no id twice for unpack). The device variants take the block table in device memory and
// cannot read it on the host: they check everything else, and the kernel skips (never touches) a row whose
// block id is out of range, so a bad table is a wrong result, never a stray write. Stateless functions,
// thread-safe on distinct buffers; device variants only enqueue on `stream` (nullptr: the default stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/gpu/rope.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {

struct PagedKvShape {
  uint32_t num_layers = 0;
  uint32_t num_blocks = 0;            // blocks per layer in the cache
  uint32_t block_size = 0;            // tokens per block
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  DType dtype = DType::kUnspecified;  // fp16, bf16 or fp32

  Status Validate() const;            // INVALID_ARGUMENT naming the bad field
  uint64_t RowBytes() const;          // num_kv_heads * head_dim * element bytes: one token of one layer's K
  uint64_t LayerBytes() const;        // num_blocks * block_size * RowBytes(): one layer's K (or V) buffer
  uint64_t ChunkBytes(uint32_t num_tokens) const;  // num_layers * 2 * num_tokens * RowBytes()

  friend bool operator==(const PagedKvShape&, const PagedKvShape&) = default;
};

// A paged cache: shape plus num_layers K and num_layers V base pointers, each LayerBytes() long.
struct PagedKvCache {
  PagedKvShape shape;
  std::span<void* const> k_layers;
  std::span<void* const> v_layers;
};

// The tokens of one sequence to move.
struct SequenceSlice {
  const int32_t* block_table = nullptr;  // block ids of the sequence, from position 0
  uint32_t block_table_size = 0;         // entries; must cover position first_token + num_tokens - 1
  uint32_t first_token = 0;              // sequence position of the chunk's first token
  uint32_t num_tokens = 0;               // > 0
};

struct UnpackOptions {
  // 0: write K as stored. Otherwise rotate K (stored post-RoPE) by this many positions while writing.
  int64_t rerotate_delta = 0;
  // How to rotate; checked only when rerotate_delta != 0.
  RopeParams rope;
};

inline constexpr uint32_t kMaxLayersPerLaunch = 128;

// CPU twins: all pointers are host memory. `chunk` must be exactly shape.ChunkBytes(num_tokens) bytes.
Status PackPagedKvCpu(const PagedKvCache& cache, const SequenceSlice& seq, std::span<std::byte> chunk);
Status UnpackPagedKvCpu(const PagedKvCache& cache, const SequenceSlice& seq, std::span<const std::byte> chunk,
                        const UnpackOptions& options = {});

// Device variants: layer pointers, block table and chunk are device memory (the spans themselves are host
// arrays). Arguments are checked first (INVALID_ARGUMENT), then UNAVAILABLE without CUDA or a GPU; INTERNAL
// for a launch error. Asynchronous: the work is done when `stream` reaches it.
Status PackPagedKv(const PagedKvCache& cache, const SequenceSlice& seq, std::span<std::byte> chunk,
                   StreamHandle stream = nullptr);
Status UnpackPagedKv(const PagedKvCache& cache, const SequenceSlice& seq, std::span<const std::byte> chunk,
                     const UnpackOptions& options = {}, StreamHandle stream = nullptr);

}  // namespace kvtier::gpu
