// The decode of one cachegen data stream (codec/CACHEGEN.md "Entropy coder", "Quantization", "Streams"),
// written once and compiled into both the CPU twin (C++20) and the CUDA kernel (C++17), so both run the same
// operations in the same order: the rANS pass over the stream's words with four interleaved states, the
// dequantization of plain and anchor-delta rows in fp32 with one rounding per operation, the clamp to the
// chunk dtype's range and the rounding to the output dtype (element_math.h, the codec's conversions). The
// codec's own decoder (codec/src/cachegen.cc) does the same with vector instructions; the twin tests check
// the two agree bit for bit.
//
// Every read is bounds-checked against the stream, every record against the chunk's body, tables and output,
// so a damaged stream or record gives an error code, never an access outside the buffers. Header-only,
// stateless.
#pragma once

#include <cstdint>

#include "element_math.h"
#include "kvtier/gpu/cachegen_layout.h"

namespace kvtier::gpu::detail {

// What went wrong in a stream; the host turns a code into codec::Decode's message for that stream.
enum CachegenStreamCode : uint32_t {
  kCachegenStreamOk = 0,
  kCachegenStreamTooShort = 1,      // shorter than its row scales and coder states
  kCachegenStreamBadScale = 2,      // a row scale negative, NaN or infinite
  kCachegenStreamBadStates = 3,     // a state below 2^16 or an odd number of word bytes
  kCachegenStreamCorrupt = 4,       // a read past the end or an escaped symbol outside the alphabet
  kCachegenStreamUnfinished = 5,    // words left over or states not back at 2^16 at the end
  kCachegenStreamBadRecord = 6,     // the stream's record points outside the body, tables or output
};

// The constants of the format (CACHEGEN.md), restated here because the codec's headers are C++20.
constexpr uint32_t kCachegenProbBits = 14;
constexpr uint32_t kCachegenProbScale = 1u << kCachegenProbBits;
constexpr uint32_t kCachegenStateLow = 1u << 16;
constexpr uint32_t kCachegenStateBytes = 16;  // four little-endian uint32 states
constexpr uint32_t kCachegenAnchorGroup = 10;
constexpr uint32_t kCachegenMaxBins = 127;

// One chunk as a decode sees it: its body, records and tables, and where the values go.
struct CachegenChunkView {
  const unsigned char* body;      // the data streams back to back
  uint64_t body_bytes;
  const CachegenStream* streams;
  const CachegenTable* tables;
  uint64_t num_tables;
  unsigned char* out;             // [layer][K|V][token][kv_head][head_dim] in out_type
  float* anchors;                 // the kernel's anchor rows, `width` floats per stream; unused by the twin
  uint32_t* errors;               // the kernel's one code per stream; unused by the twin
  uint32_t num_streams;
  uint32_t num_slices;            // 2 * layers
  uint32_t num_tokens;
  uint32_t width;                 // kv_heads * head_dim
  uint32_t out_elem_bytes;
  float max_out;                  // the chunk dtype's largest finite value: outputs are clamped to it
  uint8_t out_type;               // ElementType
  uint8_t anchor_delta;
};

// The reading end of a stream: 16-bit words until `end`. A read past the end sets `error` and yields 0.
struct CachegenReader {
  const unsigned char* pos;
  const unsigned char* end;
  bool error;
};

KVTIER_HD uint32_t LoadLe32(const unsigned char* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

// Renormalization: a state that fell below 2^16 takes the next word.
KVTIER_HD void CachegenRefill(uint32_t& x, CachegenReader& r) {
  if (x >= kCachegenStateLow) return;
  uint32_t word = 0;
  if (r.end - r.pos >= 2) {
    word = uint32_t{r.pos[0]} | (uint32_t{r.pos[1]} << 8);
    r.pos += 2;
  } else {
    r.error = true;
  }
  x = (x << 16) | word;
}

// The table symbol s with cum[s] <= slot < cum[s + 1] (cum is non-decreasing): a branch-free binary search
// instead of the codec's vector compare. Capped so that a damaged table cannot send cum[s + 1] past the array.
KVTIER_HD uint32_t CachegenFindSymbol(const CachegenTable& t, uint32_t slot) {
  uint32_t s = 0;
  for (uint32_t step = 16; step != 0; step >>= 1) {
    if (t.cum[s + step] <= slot) s += step;
  }
  return s < 30 ? s : 30;
}

// One symbol (0..2B) on state x with table t; the escape's raw bits come from the same state.
KVTIER_HD uint32_t CachegenDecodeSymbol(uint32_t& x, const CachegenTable& t, uint32_t alphabet, CachegenReader& r) {
  const uint32_t slot = x & (kCachegenProbScale - 1);
  const uint32_t s = CachegenFindSymbol(t, slot);
  const uint32_t start = t.cum[s];
  x = (t.cum[s + 1] - start) * (x >> kCachegenProbBits) + slot - start;
  CachegenRefill(x, r);
  // The only table symbol at or past `width` is the escape (the codec derives tables, so they are well formed).
  if (s < t.width) return t.lo + s;
  const uint32_t bits = t.esc_bits < kCachegenProbBits ? t.esc_bits : kCachegenProbBits;
  const uint32_t shift = kCachegenProbBits - bits;
  const uint32_t raw_slot = x & (kCachegenProbScale - 1);
  const uint32_t value = raw_slot >> shift;
  x = (1u << shift) * (x >> kCachegenProbBits) + raw_slot - (value << shift);
  CachegenRefill(x, r);
  if (value >= alphabet) {
    r.error = true;
    return t.lo;
  }
  return value;
}

// What stays fixed while one row is decoded.
struct CachegenRow {
  const CachegenTable* tables;  // channel 0's table for this row's kind
  float* anchor;                // the stream's anchor values, or null without anchor-delta
  unsigned char* out;           // the row's first element
  float step;                   // scale / B
  uint32_t bins;
  bool delta;                   // a delta row: add the anchor
  float max_out;
  uint8_t out_type;
};

// Channel c: symbol, value q * step (plus the anchor's value for a delta row; a plain row of an anchor-delta
// stream is the next anchor, kept before the clamp as the encoder keeps it), clamp, store.
KVTIER_HD void CachegenDecodeValue(uint32_t& x, const CachegenRow& row, uint32_t c, uint32_t alphabet,
                                   CachegenReader& r) {
  const uint32_t symbol = CachegenDecodeSymbol(x, row.tables[c], alphabet, r);
  float f = MulRn(static_cast<float>(static_cast<int>(symbol) - static_cast<int>(row.bins)), row.step);
  if (row.anchor != nullptr) {
    if (row.delta) {
      f = AddRn(row.anchor[c], f);
    } else {
      row.anchor[c] = f;
    }
  }
  // A reconstruction may pass the largest finite value by up to half a step: keep it finite.
  f = f < -row.max_out ? -row.max_out : (row.max_out < f ? row.max_out : f);
  StoreElement(row.out, c, row.out_type, f);
}

// A row's channels in decode order; channel c uses state c % 4, kept in registers.
KVTIER_HD void CachegenDecodeRow(uint32_t (&x)[4], const CachegenRow& row, uint32_t width, uint32_t alphabet,
                                 CachegenReader& r) {
  uint32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
  uint32_t c = 0;
  for (; c + 4 <= width; c += 4) {
    CachegenDecodeValue(x0, row, c, alphabet, r);
    CachegenDecodeValue(x1, row, c + 1, alphabet, r);
    CachegenDecodeValue(x2, row, c + 2, alphabet, r);
    CachegenDecodeValue(x3, row, c + 3, alphabet, r);
  }
  if (c < width) CachegenDecodeValue(x0, row, c, alphabet, r);
  if (c + 1 < width) CachegenDecodeValue(x1, row, c + 1, alphabet, r);
  if (c + 2 < width) CachegenDecodeValue(x2, row, c + 2, alphabet, r);
  x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
}

// Whether stream s's record stays inside the chunk: body range, rows, tables, bins.
KVTIER_HD bool CachegenRecordFits(const CachegenChunkView& v, const CachegenStream& s) {
  const bool body = s.offset <= v.body_bytes && s.length <= v.body_bytes - s.offset;
  const bool rows = s.slice < v.num_slices && s.num_tokens >= 1 && s.first_token <= v.num_tokens &&
                    s.num_tokens <= v.num_tokens - s.first_token;
  const bool plain = s.plain_tables <= v.num_tables && v.width <= v.num_tables - s.plain_tables;
  const bool delta = s.delta_tables <= v.num_tables && v.width <= v.num_tables - s.delta_tables;
  const bool bins = s.bins >= 1 && s.bins <= kCachegenMaxBins;
  return body && rows && plain && delta && bins;
}

// The scale of row r, the high half of an fp32; false when negative, NaN or infinite.
KVTIER_HD bool CachegenRowScale(const unsigned char* stream, uint32_t r, float* scale) {
  const uint32_t bits = (uint32_t{stream[2 * r]} | (uint32_t{stream[2 * r + 1]} << 8)) << 16;
  *scale = BitsFloat(bits);
  // The codec's test `scale >= 0 && scale <= FLT_MAX` on the bits: finite with the sign clear, or -0.
  return bits < 0x7f800000u || bits == 0x80000000u;
}

// Decodes stream i of chunk v into v.out and answers its code; `anchor` holds `width` floats (anchor-delta
// chunks only). The codec's order of checks: length, every row scale, coder states, then the symbols row by
// row (a row with a bad read ends the stream), then the end.
KVTIER_HD uint32_t DecodeCachegenStream(const CachegenChunkView& v, uint32_t i, float* anchor) {
  const CachegenStream& s = v.streams[i];
  if (!CachegenRecordFits(v, s) || (v.anchor_delta && anchor == nullptr)) return kCachegenStreamBadRecord;
  const unsigned char* bytes = v.body + s.offset;
  const uint64_t scale_bytes = 2 * uint64_t{s.num_tokens};
  if (s.length < scale_bytes + kCachegenStateBytes) return kCachegenStreamTooShort;
  float scale;
  for (uint32_t r = 0; r < s.num_tokens; ++r) {
    if (!CachegenRowScale(bytes, r, &scale)) return kCachegenStreamBadScale;
  }
  if ((s.length - scale_bytes - kCachegenStateBytes) % 2 != 0) return kCachegenStreamBadStates;
  uint32_t x[4];
  for (uint32_t j = 0; j < 4; ++j) {
    x[j] = LoadLe32(bytes + scale_bytes + 4 * j);
    if (x[j] < kCachegenStateLow) return kCachegenStreamBadStates;
  }
  CachegenReader reader{bytes + scale_bytes + kCachegenStateBytes, bytes + s.length, false};
  const uint32_t alphabet = 2 * s.bins + 1;
  const uint64_t row_bytes = uint64_t{v.width} * v.out_elem_bytes;
  CachegenRow row{};
  row.anchor = v.anchor_delta ? anchor : nullptr;
  row.out = v.out + (uint64_t{s.slice} * v.num_tokens + s.first_token) * row_bytes;
  row.bins = s.bins;
  row.max_out = v.max_out;
  row.out_type = v.out_type;
  for (uint32_t r = 0; r < s.num_tokens; ++r, row.out += row_bytes) {
    row.delta = v.anchor_delta && r % kCachegenAnchorGroup != 0;
    row.tables = v.tables + (row.delta ? s.delta_tables : s.plain_tables);
    CachegenRowScale(bytes, r, &scale);
    row.step = DivRn(scale, static_cast<float>(s.bins));
    CachegenDecodeRow(x, row, v.width, alphabet, reader);
    if (reader.error) return kCachegenStreamCorrupt;
  }
  const bool states_home = x[0] == kCachegenStateLow && x[1] == kCachegenStateLow && x[2] == kCachegenStateLow &&
                           x[3] == kCachegenStateLow;
  return reader.pos == reader.end && states_home ? kCachegenStreamOk : kCachegenStreamUnfinished;
}

}  // namespace kvtier::gpu::detail
