// Iota: out[i] = start + i * step (uint32, wrapping). The smallest kernel with a CPU twin of identical
// semantics; it proves the CUDA build, launch and copy path end to end and is the template every later
// kernel follows (twin in the same module, GPU output compared with the twin in tests).
#pragma once

#include <cstdint>
#include <span>

#include "kvtier/api/status.h"

namespace kvtier::gpu {

// CPU twin: always available.
void IotaHost(std::span<uint32_t> out, uint32_t start, uint32_t step);

// Runs the kernel on device 0 and copies the result into `out` (host memory). UNAVAILABLE when
// built without CUDA or no GPU is usable.
Status IotaOnDevice(std::span<uint32_t> out, uint32_t start, uint32_t step);

}  // namespace kvtier::gpu
