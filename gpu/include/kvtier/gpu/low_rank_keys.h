// Low-rank pre-RoPE keys (ShadowKV): a chunk's keys stored as a rank-r factorization, reconstructed on the
// GPU for selected blocks only, with RoPE applied at their positions; with a CPU twin of identical
// semantics.
//
// Factorization: per layer over all KV heads (as ShadowKV does), the layer's pre-RoPE keys K_l, a
// [tokens, C] matrix with C = kv_heads * head_dim (the chunk's K rows), become K_l ~= A_l x B_l with
// A_l [tokens, r] and B_l [r, C], fp32, row-major: a = [layer][token][rank], b = [layer][rank][channel].
// FactorizeKeys computes the truncated SVD on the CPU in double by one-sided Jacobi (Hestenes) rotations
// on the narrower side of K_l, a fixed sweep order and a fixed stopping rule, so it is deterministic; the
// r largest singular triplets are kept (Eckart-Young: the best rank-r approximation in Frobenius norm, up
// to the fp32 rounding of the stored factors). Data of rank <= r comes back within fp32 rounding.
// Cost: about 10 sweeps of 3 m n^2 flops, m = max(tokens, C), n = min(tokens, C) per layer.
//
// Reconstruction: output block i holds chunk tokens [block_ids[i] * block_size, + block_size) of every
// layer, layout [layer][selected block][token in block][kv_head][head_dim] in fp16, bf16 or fp32; slots
// past the chunk's last token are written as zeros. Element (t, c) = sum over j = 0..r-1, in that order,
// of a[t][j] * b[j][c] in fp32 with one rounding per product and per sum (no FMA), then each head is
// rotated at position first_position + t with rope.h's pairings and pair rotation (element_math.h), then
// rounded to the output dtype (nearest even). The twin takes cos/sin from RotationTable (double, rounded
// to float); the kernel computes the same angle in double and its cos/sin with CUDA's double-precision
// functions (within 2 ulp of double), so a float cos/sin can differ by one float ulp in rare cases
// (when the double value lies within 2 ulp of a float rounding boundary). Documented bound, kernel vs
// twin: |difference| <= 2^-22 * (|x| + |y|) for a rotated element of pair (x, y) before the dtype
// rounding, and at most one ulp of the output dtype after it; the reconstruction itself and the copied
// dims (past rotary_dim) are bit-identical.
//
// Ownership: the caller owns every buffer; LowRankKeysView is a view. Validation as paged_kv.h: the twin
// checks every block id (range); the device variant takes ids in device memory and skips (never writes)
// an output block whose id is out of range. Stateless, thread-safe on distinct buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/gpu/rope.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {

struct LowRankShape {
  uint32_t num_layers = 0;
  uint32_t num_tokens = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t rank = 0;  // 1..min(num_tokens, num_kv_heads * head_dim)

  Status Validate() const;     // INVALID_ARGUMENT naming the bad field
  uint64_t Channels() const;   // num_kv_heads * head_dim
  uint64_t AFloats() const;    // num_layers * num_tokens * rank
  uint64_t BFloats() const;    // num_layers * rank * Channels()
};

// The factors, owned (what FactorizeKeys returns and a put stores).
struct LowRankKeys {
  LowRankShape shape;
  std::vector<float> a;               // [layer][token][rank]
  std::vector<float> b;               // [layer][rank][channel]
  std::vector<double> relative_error; // per layer: sqrt(sum of dropped sigma^2) / ||K_l||_F (0 for K_l = 0)
};

// Factorizes the keys of `chunk` (host memory, canonical layout of `shape`, K pre-RoPE; V is not read).
// INVALID_ARGUMENT for a bad shape, size, rank, or a non-finite key.
Result<LowRankKeys> FactorizeKeys(const ChunkShape& shape, std::span<const std::byte> chunk, uint32_t rank);

// Factors to reconstruct from: host memory for the twin, device memory for the kernel.
struct LowRankKeysView {
  LowRankShape shape;
  const float* a = nullptr;  // AFloats() values
  const float* b = nullptr;  // BFloats() values
};

struct KeyBlockSelection {
  const int32_t* block_ids = nullptr;  // num_selected ids in [0, ceil(num_tokens / block_size))
  uint32_t num_selected = 0;           // > 0
  uint32_t block_size = 0;             // tokens per block, > 0
  int64_t first_position = 0;          // position of chunk token 0; 0 <= first_position <= 2^31 - num_tokens
};

// Output bytes: num_layers * num_selected * block_size * Channels() * element size of `dtype`.
uint64_t ReconstructOutputBytes(const LowRankShape& shape, const KeyBlockSelection& selection, DType dtype);

// CPU twin: everything in host memory.
Status ReconstructKeysCpu(const LowRankKeysView& keys, const KeyBlockSelection& selection, const RopeParams& rope,
                          DType dtype, std::span<std::byte> out);

// The kernel: factors, ids and out in device memory. rotary_dim up to kMaxDeviceRotaryDim. Arguments are
// checked first (INVALID_ARGUMENT), then UNAVAILABLE without CUDA or a GPU; INTERNAL for a launch error.
Status ReconstructKeys(const LowRankKeysView& keys, const KeyBlockSelection& selection, const RopeParams& rope,
                       DType dtype, std::span<std::byte> out, StreamHandle stream = nullptr);

}  // namespace kvtier::gpu
