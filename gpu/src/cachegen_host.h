// Host-side pieces of cachegen decoding shared by the twins (cachegen_decode.cc) and the device entry point
// (cachegen_device.cc): the argument checks, the chunk views the per-stream decode reads, and the Status of a
// stream's error code (codec::Decode's message for that stream).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cachegen_stream.h"
#include "kvtier/gpu/cachegen_decode.h"

namespace kvtier::gpu::detail {

// A plan whose records tile the output exactly (every row of every slice written by exactly one stream) and
// stay inside its body and tables. INVALID_ARGUMENT naming the first bad field or record.
Status CheckCachegenPlan(const CachegenPlan& plan);
// Output dtype, size and alignment.
Status CheckCachegenOutput(const CachegenPlan& plan, DType out_dtype, const void* out, size_t out_bytes);
// Everything about chunk `k` of a device decode: its plan, output, and the sizes and alignment of its body,
// image and workspace.
Status CheckCachegenDeviceChunk(const CachegenDeviceChunk& chunk, size_t k);

// The view of a checked plan over `body`, `streams`, `tables` and `out` (host or device memory alike);
// anchors and errors are left null.
CachegenChunkView CachegenView(const CachegenPlan& plan, DType out_dtype, const std::byte* body,
                               const CachegenStream* streams, const CachegenTable* tables, std::byte* out);

// Where the anchor rows start in a chunk's workspace (after the error codes).
uint64_t CachegenAnchorsOffset(const CachegenPlan& plan);

// A checked device chunk's view over its buffers: records (and tables, unless kept apart) from the image,
// codes and anchors in the workspace. What the kernel reads, and the batch twin in host memory.
CachegenChunkView DeviceChunkView(const CachegenDeviceChunk& chunk);

// OK for kCachegenStreamOk, else stream i's refusal.
Status CachegenStreamStatus(const CachegenPlan& plan, uint32_t i, uint32_t code);

}  // namespace kvtier::gpu::detail
