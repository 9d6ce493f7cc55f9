#include <cuda_runtime_api.h>

#include <algorithm>

#include "cuda_kernels.h"

namespace kvtier::gpu::detail {
namespace {

__global__ void IotaKernel(uint32_t* out, size_t n, uint32_t start, uint32_t step) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = start + static_cast<uint32_t>(i) * step;
  }
}

}  // namespace

std::string IotaViaDevice(uint32_t* out, size_t n, uint32_t start, uint32_t step) {
  uint32_t* device = nullptr;
  cudaError_t err = cudaMalloc(&device, n * sizeof(uint32_t));
  if (err != cudaSuccess) return std::string("cudaMalloc: ") + cudaGetErrorString(err);
  const unsigned threads = 256;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + threads - 1) / threads, 4096));
  IotaKernel<<<blocks, threads>>>(device, n, start, step);
  err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaMemcpy(out, device, n * sizeof(uint32_t), cudaMemcpyDeviceToHost);
  cudaFree(device);
  if (err != cudaSuccess) return std::string("iota kernel: ") + cudaGetErrorString(err);
  return {};
}

}  // namespace kvtier::gpu::detail
