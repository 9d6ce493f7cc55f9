// The CUDA keywords and built-ins the kernels use, for their CPU emulation (emulate_launches.cmake includes
// this first in each rewritten kernel file). A launch is queued on its stream and later runs every block and
// thread in turn on one thread, so only kernels without shared memory, barriers or warp intrinsics can run here
// (kvtier's have none).
#pragma once

#include <cmath>  // cos, sin: device functions in CUDA
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#include <cuda_runtime_api.h>

#define __global__
#define __host__
#define __device__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __grid_constant__

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
extern dim3 blockIdx, threadIdx, gridDim, blockDim;

inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round-to-nearest single operations: what the host does with -ffp-contract=off.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

namespace emu {

// Aborts on a launch a GPU would refuse (an empty grid, y or z above 65535, more than 1024 threads a block).
void CheckLaunch(dim3 grid, dim3 block);

// Queues work on `stream` (null: the legacy default stream). It runs as late as CUDA allows, when the host or
// another stream waits for it (emulated_streams.h), so a missing stream or event wait shows as a wrong result.
void Enqueue(cudaStream_t stream, std::function<void()> work);

// Every block and thread of the grid in turn, on the thread that runs the stream's work.
template <typename Kernel>
void RunGrid(const Kernel& kernel, dim3 grid, dim3 block) {
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        for (unsigned t = 0; t < block.x * block.y * block.z; ++t) {
          blockIdx = dim3(x, y, z);
          threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
          kernel();
        }
      }
    }
  }
}

// A launch: checked now, run when its stream's work is waited for. `kernel` holds copies of the arguments, as
// a launch copies them.
template <typename Kernel>
void Launch(Kernel kernel, dim3 grid, dim3 block, size_t /*shared_bytes*/ = 0, cudaStream_t stream = nullptr) {
  CheckLaunch(grid, block);
  Enqueue(stream, [kernel, grid, block] { RunGrid(kernel, grid, block); });
}

}  // namespace emu
