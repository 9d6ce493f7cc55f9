// Cachegen's data tables and the pieces shared by the codec (cachegen.cc) and ModelProfile
// (model_profile.cc): bin counts per level, quantization of one (layer, K|V) slice, and the symbol
// frequency tables with their serialized form. CACHEGEN.md specifies every format here.
//
// Plain functions and values; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "range_coder.h"

namespace kvtier::codec::internal {

inline constexpr int kCacheGenLevels = 3;
inline constexpr uint32_t kAnchorGroupTokens = 10;  // anchor-delta: one anchor, then 9 deltas
inline constexpr uint32_t kMaxBins = 127;           // B; symbols 0..2B fit a byte

// Bins B per quality level, per third of the layers (first, middle, last) and per K|V: the symbol of
// value x in a row of scale s is round(x / s * B) in [-B, B]. The one place to tune sizes; encoders
// write the B they used into the tables (inline stream or profile), so changing it here never
// breaks chunks already written. Tuned on the reference model with `kvtier bench-codec`
// (bench/RESULTS.md): the model's predictions are far more sensitive to keys than to values, so keys
// get 4-8x the bins of values, and early layers more than late ones.
inline constexpr uint8_t kDefaultBins[kCacheGenLevels][3][2] = {
    //  K   V       K   V       K   V
    {{24, 4}, {16, 4}, {12, 3}},      // level 1: smallest
    {{32, 4}, {32, 4}, {16, 4}},      // level 2: default
    {{64, 8}, {48, 8}, {32, 8}},      // level 3: best quality
};
uint32_t DefaultBins(int level, uint32_t layer, uint32_t num_layers, uint32_t kv);

// Row kinds: a plain row (anchor-delta off, or the anchor of a group) or a delta row.
inline constexpr uint32_t kKindPlain = 0;
inline constexpr uint32_t kKindDelta = 1;
inline bool IsDeltaRow(bool anchor_delta, uint32_t token_in_stream) {
  return anchor_delta && token_in_stream % kAnchorGroupTokens != 0;
}

// Row scales travel as bf16: 16 bits per row instead of 32 (for a 32-value row of a small model that
// is half a bit per value). A scale is rounded up to the next bf16, so no value of the row exceeds it;
// the bound s / (2B) then holds for the stored scale. Inputs whose absmax exceeds the largest finite
// bf16 are refused.
inline constexpr float kMaxRowScale = 3.3895313892515355e38f;  // largest finite bf16
float RoundScaleUp(float scale);                              // to the next bf16 >= scale
uint16_t ScaleBits(float bf16_scale);                         // its 16-bit wire form
float ScaleFromBits(uint16_t bits);

// The symbols of one (layer, K|V) slice: T rows of `width` (= kv_heads * head_dim) channels.
struct SliceSymbols {
  std::vector<float> scales;     // one per row, bf16 values (RoundScaleUp)
  std::vector<uint8_t> symbols;  // T * width, symbol = q + B
};

// Quantizes T rows of `width` values of `dtype` starting at `src` with B bins. Anchor groups restart
// at every multiple of tokens_per_stream. INVALID_ARGUMENT for a NaN or infinite value.
Status QuantizeSlice(const std::byte* src, DType dtype, uint32_t num_tokens, uint32_t width, uint32_t bins,
                     bool anchor_delta, uint32_t tokens_per_stream, SliceSymbols& out);

// What a table codes besides its frequencies: window [lo, lo + width) of symbols coded directly;
// when the window does not cover all 2B+1 symbols, symbol `width` of the table is the escape,
// followed by the symbol index in esc_bits raw bits.
struct TableInfo {
  uint8_t lo = 0;
  uint8_t width = 0;
  uint8_t escape = 0;    // 0 or 1
  uint8_t esc_bits = 0;  // bit width of 2B
};

// How the relative weights of a table's symbols are stored: 4-bit codes (inline tables, small) or
// 8-bit codes (profiles, precise); both on a log scale (CACHEGEN.md "Tables").
enum class WeightCodes : uint8_t { kNibble = 4, kByte = 8 };

// Appends the serialized table for symbol counts[0 .. 2B] to `out`. smooth: mix in a wide
// distribution so symbols the counts missed stay cheap (profiles, which code other chunks).
void AppendTable(const uint32_t* counts, uint32_t bins, WeightCodes codes, bool smooth, std::vector<std::byte>& out);

// Reads one table at bytes[pos...], advancing pos. False when malformed or truncated.
bool ParseTable(std::span<const std::byte> bytes, size_t& pos, uint32_t bins, WeightCodes codes, FreqTable& table,
                TableInfo& info);

// The tables of one (layer, K|V) slice: bins and per channel one table per row kind.
struct SliceTables {
  uint32_t bins = 0;
  uint32_t kinds = 0;  // 1 (plain) or 2 (plain, delta)
  std::vector<FreqTable> tables;  // [kind][channel]
  std::vector<TableInfo> info;    // [kind][channel]
  std::vector<uint8_t> lo;        // [kind][channel]: info[].lo side by side, for the decoder's vector pass
};

// Parses `kinds` * width tables with bins B after `pos`; false when malformed.
bool ParseSliceTables(std::span<const std::byte> bytes, size_t& pos, uint32_t bins, uint32_t kinds, uint32_t width,
                      WeightCodes codes, SliceTables& out);

// Per channel symbol counts of one slice, [kind][channel][symbol].
void CountSymbols(const SliceSymbols& sym, uint32_t num_tokens, uint32_t width, uint32_t bins, bool anchor_delta,
                  uint32_t tokens_per_stream, bool count_plain, bool count_delta, std::vector<uint32_t>& counts);

}  // namespace kvtier::codec::internal

namespace kvtier::codec {

// A profile's tables, ready to decode: [level - 1][layer * 2 + kv], both row kinds each.
struct ProfileTables {
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  std::vector<internal::SliceTables> levels[internal::kCacheGenLevels];
};

}  // namespace kvtier::codec
