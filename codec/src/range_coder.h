// The entropy coder of the cachegen codec: a range-variant ANS coder (rANS) with static frequency
// tables of 2^14 total, four interleaved 32-bit states sharing one stream of 16-bit words
// (CACHEGEN.md "Entropy coder"). rANS codes as tightly as a range coder with the same tables but
// decodes without a division: the symbol is found by comparing the state's low 14 bits against the
// table's cumulative frequencies (one SSE2 compare per 8 symbols), so one table is one cache line.
//
// The encoder works backwards (last symbol first) and the decoder forwards. The decoder treats its
// input as hostile: reading past the end sets an error flag (and feeds zeros) instead of touching
// memory outside the stream, and Finish() accepts a stream only when every byte was consumed and
// every state returned to the encoder's initial value, so truncated or altered streams are caught.
//
// Plain values; not synchronized.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kvtier::codec::internal {

inline constexpr uint32_t kProbBits = 14;
inline constexpr uint32_t kProbScale = 1u << kProbBits;  // every table's frequencies sum to this
inline constexpr uint32_t kRansLow = 1u << 16;           // states live in [kRansLow, 2^32)
inline constexpr uint32_t kRansLanes = 4;                // interleaved states per stream
inline constexpr uint32_t kRansHeaderBytes = 4 * kRansLanes;
inline constexpr uint32_t kMaxTableSymbols = 31;         // coded symbols per table, escape included
inline constexpr uint16_t kCumSentinel = 0x7fff;         // above any slot; fills unused entries

// One static frequency table: symbol s (0 <= s < n) owns slots [cum[s], cum[s+1]). cum[0] = 0,
// cum[n] = kProbScale, every frequency >= 1, entries after n hold kCumSentinel.
struct alignas(64) FreqTable {
  uint16_t cum[32];
};
static_assert(sizeof(FreqTable) == 64, "one frequency table is one cache line");

// Turns n (1..kMaxTableSymbols) relative weights into `table`: frequency 1 + floor(w * (scale - n) /
// sum(w)) each, the remainder to the first symbol of largest weight (all-zero weights: uniform).
// Integer-only, so encoder and decoder derive identical tables from the same weights.
void NormalizeFreqs(const uint32_t* weights, uint32_t n, FreqTable& table);

// Symbol s with cum[s] <= slot < cum[s+1], for slot < kProbScale.
inline uint32_t FindSymbol(const FreqTable& table, uint32_t slot) {
#if defined(__SSE2__)
  const __m128i v = _mm_set1_epi16(static_cast<short>(slot));
  const __m128i* p = reinterpret_cast<const __m128i*>(table.cum);
  const __m128i g0 = _mm_cmpgt_epi16(_mm_load_si128(p + 0), v);
  const __m128i g1 = _mm_cmpgt_epi16(_mm_load_si128(p + 1), v);
  const __m128i g2 = _mm_cmpgt_epi16(_mm_load_si128(p + 2), v);
  const __m128i g3 = _mm_cmpgt_epi16(_mm_load_si128(p + 3), v);
  const uint32_t greater = static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(g0, g1))) |
                           (static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(g2, g3))) << 16);
  // cum is increasing, so the entries <= slot are a prefix; cum[n] = kProbScale > slot ends it.
  return static_cast<uint32_t>(__builtin_ctz(greater)) - 1;
#else
  uint32_t s = 0;
  while (table.cum[s + 1] <= slot) ++s;
  return s;
#endif
}

// floor(x / freq) for every x < 2^32 and 1 <= freq <= kProbScale is (x * kRansRcp[freq]) >> kRansRcpShift
// with kRansRcp[f] = ceil(2^46 / f): the rounding error, below x / 2^46 < 2^-14 <= 1 / f, never
// reaches the next integer. One multiply instead of a division per encoded symbol.
inline constexpr uint32_t kRansRcpShift = 46;
extern const std::array<uint64_t, kProbScale + 1> kRansRcp;

// One encoder step (the reverse of a decode step): renormalize (emit the low word to *--pos when x
// would overflow), then x = (x / freq) * 2^P + x % freq + start, written as x + start + q * (2^P - freq).
// Branch-free: the word is always stored, pos moves only when it is kept (the caller's buffer has one
// spare word below the lowest kept one).
inline __attribute__((always_inline)) void RansEncodeStep(uint32_t& x, uint32_t start, uint32_t freq,
                                                          uint16_t*& pos) {
  // x >= freq << 18 (the largest state that stays below 2^32 after coding), without overflow.
  const uint32_t emit = (x >> (32 - kProbBits)) >= freq ? 1 : 0;
  pos[-1] = static_cast<uint16_t>(x);
  pos -= emit;
  x >>= emit * 16;
  const uint32_t q = static_cast<uint32_t>((static_cast<unsigned __int128>(x) * kRansRcp[freq]) >> kRansRcpShift);
  x += start + q * (kProbScale - freq);
}

// Appends the four states (little-endian u32, lane 0 first) and then words [pos, pos + count).
void RansWriteStream(const uint32_t (&state)[4], const uint16_t* words, size_t count, std::vector<std::byte>& out);

// Collects words backwards; Put() symbols in the reverse of their decode order.
class RansEncoder {
 public:
  // max_puts: an upper bound of Put() calls (each emits at most one word).
  explicit RansEncoder(size_t max_puts) : words_(max_puts + 1), pos_(words_.data() + words_.size()) {
    for (uint32_t& s : state_) s = kRansLow;
  }

  void Put(uint32_t lane, uint32_t start, uint32_t freq) { RansEncodeStep(state_[lane], start, freq, pos_); }
  // `bits` (1..kProbBits) raw bits of value, as a symbol of frequency 2^(kProbBits - bits).
  void PutBits(uint32_t lane, uint32_t value, uint32_t bits) {
    Put(lane, value << (kProbBits - bits), 1u << (kProbBits - bits));
  }
  // Appends the states (little-endian u32, lane 0 first) and then the words to `out`.
  void Finish(std::vector<std::byte>& out) const {
    RansWriteStream(state_, pos_, static_cast<size_t>(words_.data() + words_.size() - pos_), out);
  }

 private:
  uint32_t state_[kRansLanes];
  std::vector<uint16_t> words_;
  uint16_t* pos_;
};

// Reads what RansEncoder::Finish wrote. The hot loop keeps states in locals: see cachegen.cc.
class RansDecoder {
 public:
  // False when `bytes` cannot be a stream (too short, odd word area, a state below kRansLow).
  bool Init(std::span<const std::byte> bytes) {
    if (bytes.size() < kRansHeaderBytes || (bytes.size() - kRansHeaderBytes) % 2 != 0) return false;
    for (uint32_t i = 0; i < kRansLanes; ++i) {
      std::memcpy(&state[i], bytes.data() + 4 * i, 4);
      if (state[i] < kRansLow) return false;
    }
    pos = bytes.data() + kRansHeaderBytes;
    end = bytes.data() + bytes.size();
    error = false;
    return true;
  }
  size_t BytesLeft() const { return static_cast<size_t>(end - pos); }

  // x = freq * (x >> P) + slot - start, then refill. kChecked = false only when the caller made sure
  // at least two bytes are left.
  template <bool kChecked>
  static inline void Advance(uint32_t& x, uint32_t slot, uint32_t start, uint32_t freq, const std::byte*& p,
                             const std::byte* e, bool& err) {
    x = freq * (x >> kProbBits) + slot - start;
    if (x < kRansLow) {
      uint16_t w = 0;
      if (!kChecked || p + 2 <= e) {
        std::memcpy(&w, p, 2);
        p += 2;
      } else {
        err = true;
      }
      x = (x << 16) | w;
    }
  }
  template <bool kChecked>
  static inline uint32_t GetBits(uint32_t& x, uint32_t bits, const std::byte*& p, const std::byte* e, bool& err) {
    const uint32_t slot = x & (kProbScale - 1);
    const uint32_t shift = kProbBits - bits;
    const uint32_t value = slot >> shift;
    Advance<kChecked>(x, slot, value << shift, 1u << shift, p, e, err);
    return value;
  }

  // True when all bytes were consumed, no read ran past the end and all states are back at kRansLow.
  bool Finish() const {
    if (error || pos != end) return false;
    for (uint32_t s : state) {
      if (s != kRansLow) return false;
    }
    return true;
  }

  uint32_t state[kRansLanes] = {};
  const std::byte* pos = nullptr;
  const std::byte* end = nullptr;
  bool error = false;
};

}  // namespace kvtier::codec::internal
