// The cachegen decoder's hot loop, included several times by cachegen.cc (no include guard on
// purpose): once per instruction set, each inside its own namespace and `#pragma GCC target`, with
// CACHEGEN_FIND_SYMBOL naming the symbol search for that set. Keeping every copy in one translation
// unit with internal linkage means no inline function compiled for a wider instruction set can be
// picked by the linker for a CPU without it.
//
// Needs, before inclusion: range_coder.h, cachegen_tables.h, <cstring>, and CACHEGEN_FIND_SYMBOL(t, slot).

// Decodes one row's symbols into sym[0, width). kChecked = false requires 4 * width bytes left (two
// words per symbol at most), so refills need no bounds check.
template <bool kChecked>
inline __attribute__((always_inline)) void DecodeStep(uint32_t& x, const FreqTable& t, const TableInfo& in,
                                                       uint32_t alphabet, const std::byte*& p, const std::byte* e,
                                                       bool& err, uint8_t& out) {
  const uint32_t slot = x & (kProbScale - 1);
  const uint32_t s = CACHEGEN_FIND_SYMBOL(t, slot);
  const uint32_t start = t.cum[s];
  x = (t.cum[s + 1] - start) * (x >> kProbBits) + slot - start;
  if constexpr (kChecked) {
    if (x < kRansLow) {
      uint16_t w = 0;
      if (p + 2 <= e) {
        std::memcpy(&w, p, 2);
        p += 2;
      } else {
        err = true;
      }
      x = (x << 16) | w;
    }
  } else {
    uint16_t w;
    std::memcpy(&w, p, 2);
    const bool refill = x < kRansLow;
    x = refill ? (x << 16) | w : x;
    p += refill ? 2 : 0;
  }
  if (s < in.width) [[likely]] {
    out = static_cast<uint8_t>(in.lo + s);
  } else {
    uint32_t v = RansDecoder::GetBits<true>(x, in.esc_bits, p, e, err);
    if (v >= alphabet) {
      err = true;
      v = 0;
    }
    out = static_cast<uint8_t>(v);
  }
}

template <bool kChecked>
void DecodeRowSymbols(RansDecoder& d, const FreqTable* ft, const TableInfo* info, uint32_t width, uint32_t alphabet,
                      uint8_t* sym) {
  const std::byte* p = d.pos;
  const std::byte* const e = d.end;
  bool err = d.error;
  uint32_t x0 = d.state[0], x1 = d.state[1], x2 = d.state[2], x3 = d.state[3];
  uint32_t c = 0;
  for (; c + 4 <= width; c += 4) {
    DecodeStep<kChecked>(x0, ft[c], info[c], alphabet, p, e, err, sym[c]);
    DecodeStep<kChecked>(x1, ft[c + 1], info[c + 1], alphabet, p, e, err, sym[c + 1]);
    DecodeStep<kChecked>(x2, ft[c + 2], info[c + 2], alphabet, p, e, err, sym[c + 2]);
    DecodeStep<kChecked>(x3, ft[c + 3], info[c + 3], alphabet, p, e, err, sym[c + 3]);
  }
  if (c < width) DecodeStep<kChecked>(x0, ft[c], info[c], alphabet, p, e, err, sym[c]), ++c;
  if (c < width) DecodeStep<kChecked>(x1, ft[c], info[c], alphabet, p, e, err, sym[c]), ++c;
  if (c < width) DecodeStep<kChecked>(x2, ft[c], info[c], alphabet, p, e, err, sym[c]), ++c;
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
