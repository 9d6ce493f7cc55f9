// Re-rotation of cached keys to new positions, for reusing a chunk somewhere other than where it was computed
// (DESIGN §6: CacheBlend, Cache-Craft). RoPE rotates each pair of a key's rotary dims by position x frequency,
// so a key cached post-RoPE at position p becomes the key at p + delta by one more rotation of delta x
// frequency per pair: exact up to float rounding, for any shift. Pairings follow the fingerprint: NeoX rotates
// (i, i + rotary_dim/2), GPT-J rotates (2i, 2i+1); dims past rotary_dim are left alone. Stateless functions,
// thread-safe; a GPU twin follows in gpu/.
#pragma once

#include <cstdint>
#include <span>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"

namespace kvtier {

// Rotates the K half of every layer of a chunk in the canonical layout [layer][K|V][token][kv_head][head_dim]
// (dtype as the fingerprint says) by `delta` positions, in place; V is untouched. The fingerprint must have a
// RoPE style and keys_post_rope (pre-RoPE keys need no re-rotation: RoPE them at the new position instead).
// INVALID_ARGUMENT when it has not, or when kv.size() is not num_tokens x KvBytesPerToken.
Status RerotateKeys(const ModelFingerprint& fingerprint, uint32_t num_tokens, int64_t delta, std::span<std::byte> kv);

// The same on one head's key vector in float (head_dim values), for engines that hold keys as floats.
void RerotateHead(const ModelFingerprint& fingerprint, int64_t delta, std::span<float> head);

}  // namespace kvtier
