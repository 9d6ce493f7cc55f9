// Launch wrappers for the CUDA kernels, callable from C++20 code. The .cu files compile as C++17
// (CMAKE_CUDA_STANDARD 17), so this header uses raw pointers and no C++20 types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cachegen_stream.h"

struct CUstream_st;

namespace kvtier::gpu::detail {

// Fills host buffer `out` (n values) from a device run of the iota kernel. Returns an empty string on
// success, otherwise the CUDA error.
std::string IotaViaDevice(uint32_t* out, size_t n, uint32_t start, uint32_t step);

// Launch parameters travel by value (under the classic 4 KiB kernel-parameter limit): the layer pointers
// of one launch and the RoPE cos/sin table.
constexpr uint32_t kLaunchLayers = 128;   // == kMaxLayersPerLaunch
constexpr uint32_t kLaunchPairs = 128;    // == kMaxDeviceRotaryDim / 2

struct RopeTable {
  bool neox = true;
  uint32_t rotary_dim = 0;
  float cos[kLaunchPairs];
  float sin[kLaunchPairs];
};

struct PagedKvParams {
  unsigned char* k_layers[kLaunchLayers];  // paged K base of each layer of this launch
  unsigned char* v_layers[kLaunchLayers];
  unsigned char* chunk;                    // [layer][K|V][token] rows of this launch's first layer
  const int32_t* block_table;
  uint32_t num_layers;                     // layers in this launch
  uint32_t num_blocks;
  uint32_t block_size;
  uint32_t first_token;
  uint32_t num_tokens;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t elem_bytes;
  uint8_t elem_type;                       // ElementType
  bool unpack;                             // chunk -> paged
  bool rotate;                             // rotate K rows by `rope` while copying
  uint64_t row_bytes;
  RopeTable rope;
};
static_assert(sizeof(PagedKvParams) < 4000, "kernel parameters must stay under 4 KiB");

struct RerotateParams {
  unsigned char* chunk;
  uint32_t num_layers;
  uint32_t num_tokens;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t elem_bytes;
  uint8_t elem_type;
  uint64_t row_bytes;
  RopeTable rope;
};

// Enqueue on `stream`; `vector_bytes` (16, 8, 4 or 2) divides the row size and every base pointer. An
// empty string on success, otherwise the CUDA launch error.
std::string LaunchPagedKv(const PagedKvParams& params, uint32_t vector_bytes, CUstream_st* stream);
std::string LaunchRerotate(const RerotateParams& params, CUstream_st* stream);

struct Int8Params {
  const unsigned char* body;  // num_layers int8 streams (int8_dequant.h)
  unsigned char* out;         // canonical layout in out_type
  uint32_t num_layers;
  uint32_t num_tokens;
  uint64_t row;               // values per row: kv_heads * head_dim
  uint64_t stream_bytes;      // 8T + 2TR
  uint64_t out_row_bytes;
  uint8_t out_type;           // ElementType
};

struct GatherParams {
  const unsigned char* source;  // device-accessible (mapped host) blocks
  const int32_t* block_ids;     // device memory
  unsigned char* out;
  uint32_t num_blocks;
  uint32_t num_selected;
  uint64_t block_bytes;
};

struct LowRankParams {
  const float* a;               // [layer][token][rank]
  const float* b;               // [layer][rank][channel]
  const int32_t* block_ids;     // device memory
  unsigned char* out;           // [layer][selected][slot][channel] in out_type
  uint32_t num_layers;
  uint32_t num_tokens;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t rank;
  uint32_t num_selected;
  uint32_t block_size;
  int64_t first_position;
  uint32_t out_elem_bytes;
  uint8_t out_type;
  bool neox;
  uint32_t rotary_dim;
  double frequency[kLaunchPairs];  // theta^(-2i / rotary_dim), computed on the host as RotationTable does
};
static_assert(sizeof(LowRankParams) < 4000, "kernel parameters must stay under 4 KiB");

// `vector_bytes` (16, 8, 4 or 1) divides the block size, the source and the output pointer.
std::string LaunchInt8Dequant(const Int8Params& params, CUstream_st* stream);
std::string LaunchGather(const GatherParams& params, uint32_t vector_bytes, CUstream_st* stream);
std::string LaunchLowRank(const LowRankParams& params, CUstream_st* stream);

// Cachegen decoding of up to kCachegenLaunchChunks chunks: one thread per data stream, streams numbered
// across the chunks (chunk k's are [first_stream[k], first_stream[k + 1])).
constexpr uint32_t kCachegenLaunchChunks = 32;

struct CachegenLaunchParams {
  CachegenChunkView chunks[kCachegenLaunchChunks];  // device pointers, anchors and errors set
  uint32_t first_stream[kCachegenLaunchChunks + 1];
  uint32_t num_chunks;
};
static_assert(sizeof(CachegenLaunchParams) < 4000, "kernel parameters must stay under 4 KiB");

std::string LaunchCachegenDecode(const CachegenLaunchParams& params, CUstream_st* stream);

}  // namespace kvtier::gpu::detail
