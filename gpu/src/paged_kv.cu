// Pack/unpack between a paged KV cache and the chunk layout, and RoPE re-rotation of chunk keys.
// Flat grid-stride loops over (row, unit) with 64-bit indices; each row is contiguous on both sides.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "cuda_kernels.h"
#include "element_math.h"

namespace kvtier::gpu::detail {
namespace {

constexpr unsigned kThreads = 256;
constexpr uint64_t kMaxBlocks = 65535;

unsigned BlocksFor(uint64_t items) {
  return static_cast<unsigned>(std::max<uint64_t>(1, std::min<uint64_t>((items + kThreads - 1) / kThreads, kMaxBlocks)));
}

// 16-, 8-, 4- and 2-byte units a row is moved in.
template <int kBytes> struct Unit;
template <> struct Unit<16> { using Type = uint4; };
template <> struct Unit<8> { using Type = uint2; };
template <> struct Unit<4> { using Type = uint32_t; };
template <> struct Unit<2> { using Type = uint16_t; };

// Paged row of (layer, K|V, token t), or nullptr when its block id is out of range (the row is skipped).
__device__ __forceinline__ unsigned char* PagedRow(const PagedKvParams& p, uint32_t layer, uint32_t kv, uint32_t t) {
  const uint64_t pos = uint64_t{p.first_token} + t;
  const int32_t id = p.block_table[pos / p.block_size];
  if (id < 0 || static_cast<uint32_t>(id) >= p.num_blocks) return nullptr;
  unsigned char* base = kv == 0 ? p.k_layers[layer] : p.v_layers[layer];
  return base + (static_cast<uint64_t>(id) * p.block_size + pos % p.block_size) * p.row_bytes;
}

__device__ __forceinline__ unsigned char* ChunkRow(const PagedKvParams& p, uint32_t layer, uint32_t kv, uint32_t t) {
  return p.chunk + ((uint64_t{layer} * 2 + kv) * p.num_tokens + t) * p.row_bytes;
}

// K rows with rotation: one item per (layer, token, head, pair or copied dim).
__device__ void RotateKRows(const PagedKvParams& p) {
  const uint32_t items_per_head = p.head_dim - p.rope.rotary_dim / 2;
  const uint64_t total = uint64_t{p.num_layers} * p.num_tokens * p.num_kv_heads * items_per_head;
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  const uint64_t head_bytes = uint64_t{p.head_dim} * p.elem_bytes;
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += stride) {
    const uint32_t item = static_cast<uint32_t>(i % items_per_head);
    uint64_t rest = i / items_per_head;
    const uint32_t head = static_cast<uint32_t>(rest % p.num_kv_heads);
    rest /= p.num_kv_heads;
    const uint32_t t = static_cast<uint32_t>(rest % p.num_tokens);
    const uint32_t layer = static_cast<uint32_t>(rest / p.num_tokens);
    unsigned char* paged = PagedRow(p, layer, 0, t);
    if (paged == nullptr) continue;
    unsigned char* chunk = ChunkRow(p, layer, 0, t);
    const unsigned char* src = (p.unpack ? chunk : paged) + head * head_bytes;
    unsigned char* dst = (p.unpack ? paged : chunk) + head * head_bytes;
    RotateHeadItem(src, dst, item, p.elem_type, p.elem_bytes, p.rope.neox, p.rope.rotary_dim, p.rope.cos,
                   p.rope.sin);
  }
}

// Rows copied unchanged, `kBytes` at a time; K|V from kv_first (1 when K rows are rotated by RotateKRows).
template <int kBytes>
__device__ void CopyRows(const PagedKvParams& p, uint32_t kv_first) {
  using U = typename Unit<kBytes>::Type;
  const uint32_t kv_count = 2 - kv_first;
  const uint64_t units = p.row_bytes / kBytes;
  const uint64_t total = uint64_t{p.num_layers} * kv_count * p.num_tokens * units;
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += stride) {
    const uint64_t unit = i % units;
    uint64_t rest = i / units;
    const uint32_t t = static_cast<uint32_t>(rest % p.num_tokens);
    rest /= p.num_tokens;
    const uint32_t kv = kv_first + static_cast<uint32_t>(rest % kv_count);
    const uint32_t layer = static_cast<uint32_t>(rest / kv_count);
    unsigned char* paged = PagedRow(p, layer, kv, t);
    if (paged == nullptr) continue;
    U* paged_units = reinterpret_cast<U*>(paged);
    U* chunk_units = reinterpret_cast<U*>(ChunkRow(p, layer, kv, t));
    if (p.unpack) {
      paged_units[unit] = chunk_units[unit];
    } else {
      chunk_units[unit] = paged_units[unit];
    }
  }
}

// gridDim.y is 2 when K is rotated: y 0 rotates K rows, y 1 copies V rows; otherwise y 0 copies everything.
template <int kBytes>
__global__ void __launch_bounds__(kThreads) PagedKvKernel(const __grid_constant__ PagedKvParams p) {
  if (p.rotate && blockIdx.y == 0) {
    RotateKRows(p);
    return;
  }
  CopyRows<kBytes>(p, p.rotate ? 1 : 0);
}

__global__ void __launch_bounds__(kThreads) RerotateKernel(const __grid_constant__ RerotateParams p) {
  const uint32_t pairs = p.rope.rotary_dim / 2;
  const uint64_t total = uint64_t{p.num_layers} * p.num_tokens * p.num_kv_heads * pairs;
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  const uint64_t head_bytes = uint64_t{p.head_dim} * p.elem_bytes;
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += stride) {
    const uint32_t pair = static_cast<uint32_t>(i % pairs);
    uint64_t rest = i / pairs;
    const uint32_t head = static_cast<uint32_t>(rest % p.num_kv_heads);
    rest /= p.num_kv_heads;
    const uint32_t t = static_cast<uint32_t>(rest % p.num_tokens);
    const uint32_t layer = static_cast<uint32_t>(rest / p.num_tokens);
    unsigned char* h = p.chunk + (uint64_t{layer} * 2 * p.num_tokens + t) * p.row_bytes + head * head_bytes;
    RotateHeadItem(h, h, pair, p.elem_type, p.elem_bytes, p.rope.neox, p.rope.rotary_dim, p.rope.cos, p.rope.sin);
  }
}

std::string LaunchResult(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return {};
  return std::string(what) + ": " + cudaGetErrorString(err);
}

}  // namespace

std::string LaunchPagedKv(const PagedKvParams& p, uint32_t vector_bytes, CUstream_st* stream) {
  const uint64_t copy_rows = uint64_t{p.num_layers} * (p.rotate ? 1 : 2) * p.num_tokens;
  uint64_t items = copy_rows * (p.row_bytes / vector_bytes);
  if (p.rotate) {
    const uint64_t rotate_items =
        uint64_t{p.num_layers} * p.num_tokens * p.num_kv_heads * (p.head_dim - p.rope.rotary_dim / 2);
    items = std::max(items, rotate_items);
  }
  const dim3 grid(BlocksFor(items), p.rotate ? 2 : 1);
  switch (vector_bytes) {
    case 16: PagedKvKernel<16><<<grid, kThreads, 0, stream>>>(p); break;
    case 8: PagedKvKernel<8><<<grid, kThreads, 0, stream>>>(p); break;
    case 4: PagedKvKernel<4><<<grid, kThreads, 0, stream>>>(p); break;
    default: PagedKvKernel<2><<<grid, kThreads, 0, stream>>>(p); break;
  }
  return LaunchResult("paged KV kernel");
}

std::string LaunchRerotate(const RerotateParams& p, CUstream_st* stream) {
  const uint64_t items = uint64_t{p.num_layers} * p.num_tokens * p.num_kv_heads * (p.rope.rotary_dim / 2);
  RerotateKernel<<<BlocksFor(items), kThreads, 0, stream>>>(p);
  return LaunchResult("rerotate kernel");
}

}  // namespace kvtier::gpu::detail
