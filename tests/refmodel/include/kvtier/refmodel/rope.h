// RoPE as the reference model applies it: GPT-J style, rotating interleaved pairs (2i, 2i+1) of every
// head by position * theta^(-2i / head_size).
//
// Public because reuse of non-prefix chunks (DESIGN §6) moves keys to new positions: rotating a
// post-RoPE key by `new_pos - old_pos` is the same rotation, up to fp32 rounding, as computing it at
// new_pos. The forward pass calls exactly this function, so rotating an exported pre-RoPE key by its
// position reproduces the cached post-RoPE key bit for bit.
//
// Thread safety: a pure function.
#pragma once

#include <span>

namespace kvtier::refmodel {

// Rotates `vec` in place. `vec` holds one or more heads of `head_size` floats back to back (a query or
// a key row); `head_size` must be even and divide vec.size(). A negative position rotates backwards,
// which undoes a rotation up to rounding.
void ApplyRope(std::span<float> vec, int head_size, int position, float theta);

}  // namespace kvtier::refmodel
