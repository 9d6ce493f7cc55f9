// Cachegen decoding: one thread per data stream (a stream's rANS pass is sequential), all streams of up to
// kCachegenLaunchChunks chunks in one launch. The per-stream code is cachegen_stream.h, shared with the twin.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "cuda_kernels.h"

namespace kvtier::gpu::detail {
namespace {

// Small blocks: a chunk has few streams (2 * layers * sub-chunks), each a long sequential job, so spreading
// them over many multiprocessors matters more than filling one.
constexpr unsigned kCachegenThreads = 64;
constexpr uint32_t kMaxBlocks = 65535;

__global__ void __launch_bounds__(kCachegenThreads)
    CachegenDecodeKernel(const __grid_constant__ CachegenLaunchParams p) {
  const uint32_t total = p.first_stream[p.num_chunks];
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t g = blockIdx.x * blockDim.x + threadIdx.x; g < total; g += stride) {
    uint32_t k = 0;
    while (p.first_stream[k + 1] <= g) ++k;
    const CachegenChunkView& v = p.chunks[k];
    const uint32_t i = g - p.first_stream[k];
    float* anchor = v.anchor_delta ? v.anchors + uint64_t{i} * v.width : nullptr;
    v.errors[i] = DecodeCachegenStream(v, i, anchor);
  }
}

}  // namespace

std::string LaunchCachegenDecode(const CachegenLaunchParams& p, CUstream_st* stream) {
  const uint32_t total = p.first_stream[p.num_chunks];
  const uint32_t needed = (total + kCachegenThreads - 1) / kCachegenThreads;
  const unsigned blocks = std::max<uint32_t>(1, std::min<uint32_t>(needed, kMaxBlocks));
  CachegenDecodeKernel<<<blocks, kCachegenThreads, 0, stream>>>(p);
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return {};
  return std::string("cachegen decode kernel: ") + cudaGetErrorString(err);
}

}  // namespace kvtier::gpu::detail
