// int8 dequantization, direct gather from mapped host memory, and low-rank key reconstruction with RoPE.
// Flat grid-stride loops with 64-bit indices; the arithmetic is data_path_math.h / element_math.h, shared
// with the CPU twins.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "cuda_kernels.h"
#include "data_path_math.h"

namespace kvtier::gpu::detail {
namespace {

constexpr unsigned kThreads = 256;
constexpr uint64_t kMaxBlocks = 65535;

unsigned BlocksFor(uint64_t items) {
  return static_cast<unsigned>(std::max<uint64_t>(1, std::min<uint64_t>((items + kThreads - 1) / kThreads, kMaxBlocks)));
}

std::string LaunchResult(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return {};
  return std::string(what) + ": " + cudaGetErrorString(err);
}

template <int kBytes> struct Unit;
template <> struct Unit<16> { using Type = uint4; };
template <> struct Unit<8> { using Type = uint2; };
template <> struct Unit<4> { using Type = uint32_t; };
template <> struct Unit<1> { using Type = uint8_t; };

// One item per output value.
__global__ void __launch_bounds__(kThreads) Int8DequantKernel(const __grid_constant__ Int8Params p) {
  const uint64_t rows_per_layer = 2 * uint64_t{p.num_tokens};
  const uint64_t total = p.num_layers * rows_per_layer * p.row;
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  for (uint64_t e = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < total; e += stride) {
    const uint64_t row_index = e / p.row;  // layer * 2T + kv * T + token
    const uint64_t i = e % p.row;
    const uint64_t layer = row_index / rows_per_layer;
    const uint64_t r = row_index % rows_per_layer;
    const unsigned char* stream = p.body + layer * p.stream_bytes;
    const float step = Int8Step(LoadUnalignedFloat(stream + 4 * r));
    const int8_t q = static_cast<int8_t>(stream[8 * uint64_t{p.num_tokens} + r * p.row + i]);
    StoreElement(p.out + row_index * p.out_row_bytes, static_cast<uint32_t>(i), p.out_type, Int8Value(q, step));
  }
}

// One item per (selected block, unit); reads cross the bus from mapped host memory.
template <int kBytes>
__global__ void __launch_bounds__(kThreads) GatherKernel(const __grid_constant__ GatherParams p) {
  using U = typename Unit<kBytes>::Type;
  const uint64_t units = p.block_bytes / kBytes;
  const uint64_t total = uint64_t{p.num_selected} * units;
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += stride) {
    const uint64_t selected = i / units;
    const uint64_t unit = i % units;
    const int32_t id = p.block_ids[selected];
    if (id < 0 || static_cast<uint32_t>(id) >= p.num_blocks) continue;
    const U* src = reinterpret_cast<const U*>(p.source + static_cast<uint64_t>(id) * p.block_bytes);
    reinterpret_cast<U*>(p.out + selected * p.block_bytes)[unit] = src[unit];
  }
}

// One item per (layer, selected block, slot, head, pair or copied dim), as RotateHeadItem splits a head.
__global__ void __launch_bounds__(kThreads) LowRankKernel(const __grid_constant__ LowRankParams p) {
  const uint32_t pairs = p.rotary_dim / 2;
  const uint32_t items_per_head = p.head_dim - pairs;
  const uint64_t channels = uint64_t{p.num_kv_heads} * p.head_dim;
  const uint64_t total =
      uint64_t{p.num_layers} * p.num_selected * p.block_size * p.num_kv_heads * items_per_head;
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total; i += stride) {
    const uint32_t item = static_cast<uint32_t>(i % items_per_head);
    uint64_t rest = i / items_per_head;
    const uint32_t head = static_cast<uint32_t>(rest % p.num_kv_heads);
    rest /= p.num_kv_heads;
    const uint32_t slot = static_cast<uint32_t>(rest % p.block_size);
    rest /= p.block_size;
    const uint32_t selected = static_cast<uint32_t>(rest % p.num_selected);
    const uint32_t layer = static_cast<uint32_t>(rest / p.num_selected);
    const uint64_t blocks = (uint64_t{p.num_tokens} + p.block_size - 1) / p.block_size;
    const int32_t id = p.block_ids[selected];
    if (id < 0 || static_cast<uint64_t>(id) >= blocks) continue;
    const uint64_t out_row = (uint64_t{layer} * p.num_selected + selected) * p.block_size + slot;
    unsigned char* out_head = p.out + (out_row * channels + uint64_t{head} * p.head_dim) * p.out_elem_bytes;
    const uint64_t t = static_cast<uint64_t>(id) * p.block_size + slot;
    uint32_t x = item + pairs, y = 0;  // a copied dim, unless item is a pair
    if (item < pairs) PairDims(p.neox, p.rotary_dim, item, &x, &y);
    if (t >= p.num_tokens) {
      StoreElement(out_head, x, p.out_type, 0.0f);
      if (item < pairs) StoreElement(out_head, y, p.out_type, 0.0f);
      continue;
    }
    const float* a_row = p.a + (uint64_t{layer} * p.num_tokens + t) * p.rank;
    const float* b = p.b + uint64_t{layer} * p.rank * channels;
    const uint64_t c0 = uint64_t{head} * p.head_dim;
    const float vx = LowRankElement(a_row, b, p.rank, channels, c0 + x);
    if (item >= pairs) {
      StoreElement(out_head, x, p.out_type, vx);
      continue;
    }
    const float vy = LowRankElement(a_row, b, p.rank, channels, c0 + y);
    const double angle = static_cast<double>(p.first_position + static_cast<int64_t>(t)) * p.frequency[item];
    float rx, ry;
    RotatePair(vx, vy, static_cast<float>(cos(angle)), static_cast<float>(sin(angle)), &rx, &ry);
    StoreElement(out_head, x, p.out_type, rx);
    StoreElement(out_head, y, p.out_type, ry);
  }
}

}  // namespace

std::string LaunchInt8Dequant(const Int8Params& p, CUstream_st* stream) {
  const uint64_t items = uint64_t{p.num_layers} * 2 * p.num_tokens * p.row;
  Int8DequantKernel<<<BlocksFor(items), kThreads, 0, stream>>>(p);
  return LaunchResult("int8 dequantization kernel");
}

std::string LaunchGather(const GatherParams& p, uint32_t vector_bytes, CUstream_st* stream) {
  const uint64_t items = uint64_t{p.num_selected} * (p.block_bytes / vector_bytes);
  switch (vector_bytes) {
    case 16: GatherKernel<16><<<BlocksFor(items), kThreads, 0, stream>>>(p); break;
    case 8: GatherKernel<8><<<BlocksFor(items), kThreads, 0, stream>>>(p); break;
    case 4: GatherKernel<4><<<BlocksFor(items), kThreads, 0, stream>>>(p); break;
    default: GatherKernel<1><<<BlocksFor(items), kThreads, 0, stream>>>(p); break;
  }
  return LaunchResult("gather kernel");
}

std::string LaunchLowRank(const LowRankParams& p, CUstream_st* stream) {
  const uint64_t items = uint64_t{p.num_layers} * p.num_selected * p.block_size * p.num_kv_heads *
                         (p.head_dim - p.rotary_dim / 2);
  LowRankKernel<<<BlocksFor(items), kThreads, 0, stream>>>(p);
  return LaunchResult("low-rank keys kernel");
}

}  // namespace kvtier::gpu::detail
