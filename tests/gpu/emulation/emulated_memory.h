// The emulated device's memory (emulated_memory.cc), for the rest of its runtime (emulated_runtime.cc): device
// allocations, other processes' device memory opened by IPC handle, and registered host ranges. Device memory is
// heap memory, whose bounds the sanitizers watch; or, where KVTIER_EMULATE_CUDA_IPC is set in the environment (the
// CUDA IPC test sets it for itself and its server process), a memfd mapped shared, which another process maps by
// its IPC handle. Without it CUDA IPC is refused. Everything here needs the device locked (emulated_streams.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace emu {

// New device memory filled with 0xa5 (cudaMalloc's holds whatever was there); null when there is no room.
void* AllocateLocked(size_t bytes);
// Frees what AllocateLocked returned.
void FreeLocked(void* data);
// Whether `p` is what CUDA calls pageable: host memory neither registered nor device memory.
bool PageableLocked(const void* p);

// Sets the calling thread's last error, which cudaGetLastError returns (emulated_runtime.cc), and returns it.
cudaError_t RecordError(cudaError_t error);

}  // namespace emu
