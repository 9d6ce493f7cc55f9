// Launch wrappers for the CUDA kernels, callable from C++20 code. The .cu files compile as C++17
// (CMAKE_CUDA_STANDARD 17), so this header uses raw pointers and no C++20 types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kvtier::gpu::detail {

// Fills host buffer `out` (n values) from a device run of the iota kernel. Returns an empty string on
// success, otherwise the CUDA error.
std::string IotaViaDevice(uint32_t* out, size_t n, uint32_t start, uint32_t step);

}  // namespace kvtier::gpu::detail
