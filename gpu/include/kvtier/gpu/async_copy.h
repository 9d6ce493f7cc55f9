// Asynchronous copies between host and device memory on a stream (cudaMemcpyAsync with the direction
// inferred from the pointers, which unified virtual addressing allows for device memory and for registered
// or cudaHostAlloc'ed host memory).
//
// A copy from or to host memory that is not pinned is staged by the driver and is synchronous with respect to
// the host; pin long-lived buffers (HostRegistration, host_gather.h) to get real overlap. The caller keeps both
// ranges alive and unchanged until `stream` reaches the copy. Thread-safe (enqueueing is).
#pragma once

#include <cstddef>

#include "kvtier/api/status.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {

// Enqueues a copy of `bytes` bytes from `src` to `dst` on `stream` (nullptr: the default stream). bytes == 0
// does nothing. INVALID_ARGUMENT for a null pointer with bytes > 0; UNAVAILABLE without CUDA or a GPU;
// INTERNAL when CUDA refuses the copy.
Status CopyAsync(void* dst, const void* src, size_t bytes, StreamHandle stream);

// Blocks until every copy and kernel queued on `stream` so far has finished; the first error of that work.
// UNAVAILABLE without CUDA or a GPU.
Status SynchronizeStream(StreamHandle stream);

}  // namespace kvtier::gpu
