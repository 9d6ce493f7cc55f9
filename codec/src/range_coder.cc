#include "range_coder.h"

namespace kvtier::codec::internal {

void NormalizeFreqs(const uint32_t* weights, uint32_t n, FreqTable& table) {
  uint64_t total = 0;
  uint32_t largest = 0;
  for (uint32_t i = 0; i < n; ++i) {
    total += weights[i];
    if (weights[i] > weights[largest]) largest = i;
  }
  uint32_t freq[kMaxTableSymbols];
  uint32_t sum = 0;
  const uint64_t span = kProbScale - n;
  // Weight codes of inline tables keep every product below 2^32: a 32-bit division is cheaper and
  // gives the same quotient.
  const bool narrow = total * span <= UINT32_MAX;
  for (uint32_t i = 0; i < n; ++i) {
    if (total == 0) {
      freq[i] = kProbScale / n;
    } else if (narrow) {
      freq[i] = 1 + static_cast<uint32_t>(weights[i] * span) / static_cast<uint32_t>(total);
    } else {
      freq[i] = 1 + static_cast<uint32_t>(uint64_t{weights[i]} * span / total);
    }
    sum += freq[i];
  }
  freq[largest] += kProbScale - sum;  // sum <= kProbScale by construction
  table.cum[0] = 0;
  for (uint32_t i = 0; i < n; ++i) table.cum[i + 1] = static_cast<uint16_t>(table.cum[i] + freq[i]);
  for (uint32_t i = n + 1; i < 32; ++i) table.cum[i] = kCumSentinel;
}

namespace {
constexpr std::array<uint64_t, kProbScale + 1> MakeReciprocals() {
  std::array<uint64_t, kProbScale + 1> r{};
  for (uint64_t f = 1; f <= kProbScale; ++f) r[f] = ((uint64_t{1} << kRansRcpShift) + f - 1) / f;
  return r;
}
}  // namespace

// Built at compile time: read-only data, no initialization order to worry about.
constexpr std::array<uint64_t, kProbScale + 1> kRansRcp = MakeReciprocals();

void RansWriteStream(const uint32_t (&state)[4], const uint16_t* words, size_t count, std::vector<std::byte>& out) {
  const size_t at = out.size();
  out.resize(at + kRansHeaderBytes + 2 * count);
  for (uint32_t i = 0; i < kRansLanes; ++i) std::memcpy(out.data() + at + 4 * i, &state[i], 4);
  if (count != 0) std::memcpy(out.data() + at + kRansHeaderBytes, words, 2 * count);
}

}  // namespace kvtier::codec::internal
