// Argument checks shared by the CPU twins and the device entry points, so both reject the same inputs
// with the same messages.
#pragma once

#include <cstddef>

#include "kvtier/gpu/paged_kv.h"
#include "kvtier/gpu/rope.h"

namespace kvtier::gpu::detail {

// Everything about a pack/unpack call. `table_on_host`: the block ids can be read here and are checked
// (range; for `unpack` also that no id is used twice).
Status CheckPagedCall(const PagedKvCache& cache, const SequenceSlice& seq, const void* chunk, size_t chunk_bytes,
                      bool table_on_host, bool unpack);
Status CheckUnpackOptions(const UnpackOptions& options, const PagedKvShape& shape, bool on_device);
Status CheckRerotateCall(const ChunkShape& shape, const RopeParams& rope, const void* chunk, size_t chunk_bytes,
                         bool on_device);

// Element type code of the kernels (element_math.h) for a validated dtype.
uint8_t ElementTypeOf(DType dtype);

}  // namespace kvtier::gpu::detail
