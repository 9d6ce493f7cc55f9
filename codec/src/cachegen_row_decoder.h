// The cachegen decoder's hot loop, included several times by cachegen.cc (no include guard on
// purpose): once per instruction set, each inside its own namespace and `#pragma GCC target`, with
// CACHEGEN_FIND_SYMBOL naming the symbol search for that set. Keeping every copy in one translation
// unit with internal linkage means no inline function compiled for a wider instruction set can be
// picked by the linker for a CPU without it.
//
// The loop writes each channel's symbol relative to its table's window, sym[c] = symbol - lo (mod 256):
// the table index for the common case, so the loop needs no per-channel TableInfo; the caller's vector
// pass adds lo back. Escapes are found without TableInfo too: the escape is always a table's last
// symbol, the one whose slots end at kProbScale, and only that rare case looks at TableInfo.
//
// Needs, before inclusion: range_coder.h, cachegen_tables.h, <cstring>, and CACHEGEN_FIND_SYMBOL(t, slot).

// What the rare path hands back: the state and stream position after it, and the relative symbol.
struct LastSymbolResult {
  uint32_t x;
  const std::byte* p;
  uint8_t rel;
  bool err;
};

// Table symbol s is its table's last: an escape when the table has one (then read the symbol's raw
// bits from the same state, range-checked), else a plain window symbol.
[[gnu::noinline, gnu::cold]] LastSymbolResult DecodeLastSymbol(uint32_t x, uint32_t s, const TableInfo& in,
                                                                uint32_t alphabet, const std::byte* p,
                                                                const std::byte* e, bool err) {
  if (s < in.width) return {x, p, static_cast<uint8_t>(s), err};
  uint32_t v = RansDecoder::GetBits<true>(x, in.esc_bits, p, e, err);
  if (v >= alphabet) {
    err = true;
    v = in.lo;
  }
  return {x, p, static_cast<uint8_t>(v - in.lo), err};
}

// Read-only context of one row, touched only off the hot path.
struct RowContext {
  const FreqTable* ft;
  const TableInfo* info;
  uint32_t alphabet;
  const std::byte* end;
};

// One symbol on state x with table t (channel t - ctx.ft). kChecked = false requires 4 bytes left for
// every symbol still to decode in the row (two words at most each), so refills need no bounds check.
template <bool kChecked>
inline __attribute__((always_inline)) void DecodeStep(uint32_t& x, const FreqTable& t, const RowContext& ctx,
                                                       const std::byte*& p, bool& err, uint8_t& out) {
  const uint32_t slot = x & (kProbScale - 1);
  const uint32_t s = CACHEGEN_FIND_SYMBOL(t, slot);
  uint32_t pair;  // cum[s] and cum[s + 1] in one load (s + 1 <= 31 stays inside the table)
  std::memcpy(&pair, &t.cum[s], 4);
  const uint32_t start = pair & 0xffff, next = pair >> 16;
  x = (next - start) * (x >> kProbBits) + slot - start;
  if constexpr (kChecked) {
    if (x < kRansLow) {
      uint16_t w = 0;
      if (p + 2 <= ctx.end) {
        std::memcpy(&w, p, 2);
        p += 2;
      } else {
        err = true;
      }
      x = (x << 16) | w;
    }
  } else {
    // Branch-free: whether a lane refills is data, and mispredicting it costs more than the shifts.
    uint16_t w;
    std::memcpy(&w, p, 2);
    const uint32_t shift = static_cast<uint32_t>(x < kRansLow) << 4;  // 0 or 16
    x = (x << shift) | (uint32_t{w} >> (16 - shift));
    p += shift >> 3;
  }
  out = static_cast<uint8_t>(s);
  if (next == kProbScale) [[unlikely]] {
    const LastSymbolResult r = DecodeLastSymbol(x, s, ctx.info[&t - ctx.ft], ctx.alphabet, p, ctx.end, err);
    x = r.x;
    p = r.p;
    err = r.err;
    out = r.rel;
  }
}

template <bool kChecked>
void DecodeRowSymbols(RansDecoder& d, const FreqTable* ft, const TableInfo* info, uint32_t width, uint32_t alphabet,
                      uint8_t* sym) {
  const RowContext ctx{ft, info, alphabet, d.end};
  const std::byte* p = d.pos;
  bool err = d.error;
  uint32_t x0 = d.state[0], x1 = d.state[1], x2 = d.state[2], x3 = d.state[3];
  const FreqTable* t = ft;
  const FreqTable* const quad_end = ft + (width & ~3u);
  for (; t != quad_end; t += 4, sym += 4) {
    DecodeStep<kChecked>(x0, t[0], ctx, p, err, sym[0]);
    DecodeStep<kChecked>(x1, t[1], ctx, p, err, sym[1]);
    DecodeStep<kChecked>(x2, t[2], ctx, p, err, sym[2]);
    DecodeStep<kChecked>(x3, t[3], ctx, p, err, sym[3]);
  }
  const uint32_t tail = width & 3u;
  if (tail > 0) DecodeStep<kChecked>(x0, t[0], ctx, p, err, sym[0]);
  if (tail > 1) DecodeStep<kChecked>(x1, t[1], ctx, p, err, sym[1]);
  if (tail > 2) DecodeStep<kChecked>(x2, t[2], ctx, p, err, sym[2]);
  d.state[0] = x0;
  d.state[1] = x1;
  d.state[2] = x2;
  d.state[3] = x3;
  d.pos = p;
  d.error = err;
}

void DecodeRow(RansDecoder& d, const FreqTable* ft, const TableInfo* info, uint32_t width, uint32_t alphabet,
               uint8_t* sym) {
  if (d.BytesLeft() >= size_t{4} * width) {
    DecodeRowSymbols<false>(d, ft, info, width, alphabet, sym);
  } else {
    DecodeRowSymbols<true>(d, ft, info, width, alphabet, sym);
  }
}
