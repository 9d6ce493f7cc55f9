// The emulated device's streams and events (emulated_streams.cc), shared with the rest of its runtime
// (emulated_runtime.cc). Work queued on a stream runs as late as CUDA allows: only when the host waits for it
// (a stream or event synchronize, cudaFree, cudaHostUnregister, a copy into pageable memory) or when a stream
// that waits on an event reaches the wait. A missing wait therefore shows as a wrong result or, under ASan, as
// a use after free, instead of passing because the work happened to be done already.
//
// Thread safety: one lock for the whole device. Every runtime call takes it, and queued work runs under it, on
// the thread that waits for it (so kernels, which use the global blockIdx and threadIdx, never overlap).
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <mutex>

namespace emu {

std::unique_lock<std::mutex> LockDevice();

// The functions below need the device locked.

// Queues `work` on `stream` (null: the legacy default stream, which the non-blocking streams of gpu/ do not
// wait for, nor it for them).
void EnqueueLocked(cudaStream_t stream, std::function<void()> work);
// Runs what is queued on `stream` now.
void SynchronizeLocked(cudaStream_t stream);
// Runs what is queued on every stream now (what cudaDeviceSynchronize does, and cudaFree with it).
void SynchronizeDeviceLocked();

}  // namespace emu
