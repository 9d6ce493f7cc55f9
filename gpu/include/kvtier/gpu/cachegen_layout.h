// The two records a cachegen decode plan is made of (cachegen_decode.h), in the byte layout both the CPU twin
// and the CUDA kernel read: one per data stream and one per decode table. They are kept apart from
// cachegen_decode.h because the kernels include them, and the kernels compile as C++17 without the
// library's C++20 headers. Plain data; the plan owns them.
#pragma once

#include <cstdint>

namespace kvtier::gpu {

// One static frequency table of the cachegen entropy coder (codec/CACHEGEN.md "Entropy coder" and
// "Tables"): table symbol s owns slots [cum[s], cum[s + 1]) of 2^14; cum[0] = 0, cum[n] = 2^14, 0x7fff after.
// Window symbols lo .. lo + width - 1 are coded directly; with `escape`, table symbol `width` is the escape,
// followed by the symbol itself in esc_bits raw bits.
struct CachegenTable {
  uint16_t cum[32];
  uint8_t lo;
  uint8_t width;
  uint8_t escape;    // 0 or 1
  uint8_t esc_bits;  // bit width of 2B
};
static_assert(sizeof(CachegenTable) == 68, "the device reads tables at a 68-byte stride");

// One data stream: rows [first_token, first_token + num_tokens) of slice `slice` (= layer * 2 + K|V).
struct CachegenStream {
  uint64_t offset;        // of its first byte in the plan's body
  uint64_t length;        // bytes
  uint32_t index;         // its index in the container (error messages name it)
  uint32_t slice;
  uint32_t first_token;
  uint32_t num_tokens;
  uint32_t plain_tables;  // index of channel 0's plain-row table; channel c's is plain_tables + c
  uint32_t delta_tables;  // the same for delta rows (anchor-delta chunks; else equal to plain_tables)
  uint32_t bins;          // B: symbols 0..2B, symbol B is the value 0
  uint32_t reserved;      // 0
};
static_assert(sizeof(CachegenStream) == 48, "the device reads streams at a 48-byte stride");

}  // namespace kvtier::gpu
