// The CUDA keywords and built-ins the kernels use, for their CPU emulation (emulate_launches.cmake includes
// this first in each rewritten kernel file). A launch runs every block and thread in turn on the calling
// thread, so only kernels without shared memory, barriers or warp intrinsics can run here (kvtier's have none).
#pragma once

#include <cmath>  // cos, sin: device functions in CUDA
#include <cstddef>
#include <cstdint>
#include <cstring>

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

template <typename Kernel>
void Launch(Kernel kernel, dim3 grid, dim3 block, size_t /*shared_bytes*/ = 0, void* /*stream*/ = nullptr) {
  CheckLaunch(grid, block);
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

}  // namespace emu
