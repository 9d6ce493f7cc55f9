// Argument checks shared by the CPU twins and the device entry points, so both reject the same inputs
// with the same messages.
#pragma once

#include <cstddef>

#include "kvtier/gpu/host_gather.h"
#include "kvtier/gpu/int8_dequant.h"
#include "kvtier/gpu/low_rank_keys.h"
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

// int8 dequantization: shape, body size, output dtype, size and alignment (not the scales).
Status CheckInt8Call(const Int8Payload& payload, DType out_dtype, const void* out, size_t out_bytes);
// Every scale finite and >= 0, as codec::Decode requires; for payloads in host memory.
Status CheckInt8Scales(const Int8Payload& payload);
// Direct gather. `ids_on_host`: the ids can be read here and are range-checked.
Status CheckGatherCall(const BlockGather& gather, const void* out, size_t out_bytes, bool ids_on_host);
// Low-rank reconstruction. `on_device`: ids are not read here, rotary_dim is limited to kMaxDeviceRotaryDim.
Status CheckReconstructCall(const LowRankKeysView& keys, const KeyBlockSelection& selection, const RopeParams& rope,
                            DType dtype, const void* out, size_t out_bytes, bool on_device);

// Element type code of the kernels (element_math.h) for a validated dtype.
uint8_t ElementTypeOf(DType dtype);

}  // namespace kvtier::gpu::detail
