// RoPE re-rotation of cached keys by a position shift, on the GPU and in a CPU twin of identical semantics.
//
// A key stored post-RoPE at position p becomes the key at p + delta by one more rotation of delta x
// frequency_i for each rotary pair i, frequency_i = theta^(-2i / rotary_dim) (DESIGN §6). Pairings: NeoX
// rotates dims (i, i + rotary_dim/2), GPT-J rotates (2i, 2i+1); dims past rotary_dim are left alone. This is
// client/src/rope.cc's RerotateKeys, and the twin equals it bit for bit on finite values: the cos/sin table is
// computed once per call on the host in double and rounded to float exactly as rope.cc does, and both the
// twin and the kernel then rotate in float with one rounding per product and per sum (no FMA), converting
// fp16/bf16 with round-to-nearest-even. The kernel therefore equals the twin bit for bit as well (error bound
// 0 ulp on finite inputs); only the payload of a NaN produced from a NaN input may differ (CUDA's canonical
// NaN vs the CPU's propagated one). The same rotation is fused into UnpackPagedKv (paged_kv.h).
//
// Chunks are in the canonical layout [layer][K|V][token][kv_head][head_dim]; only K is touched.
// Stateless functions, thread-safe on distinct buffers. Device variants take device memory and only enqueue
// work on `stream` (nullptr: the default stream); errors of the running kernel surface on the stream.
#pragma once

#include <cstdint>
#include <span>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {

struct RopeParams {
  RopeStyle style = RopeStyle::kNone;  // kNeox or kGptj to rotate; kNone is rejected by Validate()
  uint32_t rotary_dim = 0;             // rotated dims per head: even, 2..head_dim
  double theta = 10000.0;              // base of the frequencies, > 0

  // INVALID_ARGUMENT naming the bad field, for heads of `head_dim` elements.
  Status Validate(uint32_t head_dim) const;
  static RopeParams FromFingerprint(const ModelFingerprint& fingerprint);
};

// The device kernels carry the cos/sin table in their launch parameters: rotary_dim up to this many dims.
inline constexpr uint32_t kMaxDeviceRotaryDim = 256;

// The per-pair cosines and sines of a shift of `delta` positions, rotary_dim / 2 of each, computed in double
// and rounded to float as client/src/rope.cc does. `cos` and `sin` must hold rotary_dim / 2 values.
void RotationTable(const RopeParams& rope, int64_t delta, std::span<float> cos, std::span<float> sin);

// The shape of a chunk in the canonical layout.
struct ChunkShape {
  uint32_t num_layers = 0;
  uint32_t num_tokens = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  DType dtype = DType::kUnspecified;  // fp16, bf16 or fp32

  Status Validate() const;      // INVALID_ARGUMENT naming the bad field
  uint64_t Bytes() const;       // num_layers * 2 * num_tokens * num_kv_heads * head_dim * element bytes
};

// CPU twin: rotates the keys of `chunk` (host memory, exactly shape.Bytes()) by `delta` positions in place.
// delta 0 leaves the chunk untouched. INVALID_ARGUMENT for a bad shape, RoPE parameters or buffer size.
Status RerotateChunkKeysCpu(const ChunkShape& shape, const RopeParams& rope, int64_t delta, std::span<std::byte> chunk);

// The same on the GPU: `chunk` is device memory. Arguments are checked first (INVALID_ARGUMENT, also for
// rotary_dim above kMaxDeviceRotaryDim), then UNAVAILABLE without CUDA or a GPU; INTERNAL for a launch error.
Status RerotateChunkKeys(const ChunkShape& shape, const RopeParams& rope, int64_t delta, std::span<std::byte> chunk,
                         StreamHandle stream = nullptr);

}  // namespace kvtier::gpu
