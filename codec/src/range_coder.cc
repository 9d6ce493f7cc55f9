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
  for (uint32_t i = 0; i < n; ++i) {
    freq[i] = total == 0 ? kProbScale / n
                         : 1 + static_cast<uint32_t>(uint64_t{weights[i]} * (kProbScale - n) / total);
    sum += freq[i];
  }
  freq[largest] += kProbScale - sum;  // sum <= kProbScale by construction
  table.cum[0] = 0;
  for (uint32_t i = 0; i < n; ++i) table.cum[i + 1] = static_cast<uint16_t>(table.cum[i] + freq[i]);
  for (uint32_t i = n + 1; i < 32; ++i) table.cum[i] = kCumSentinel;
}

void RansEncoder::Finish(std::vector<std::byte>& out) const {
  const size_t at = out.size();
  const size_t words = words_.size() - pos_;
  out.resize(at + kRansHeaderBytes + 2 * words);
  for (uint32_t i = 0; i < kRansLanes; ++i) std::memcpy(out.data() + at + 4 * i, &state_[i], 4);
  if (words != 0) std::memcpy(out.data() + at + kRansHeaderBytes, words_.data() + pos_, 2 * words);
}

}  // namespace kvtier::codec::internal
