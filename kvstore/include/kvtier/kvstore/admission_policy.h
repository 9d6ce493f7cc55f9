// AdmissionPolicy: decides whether a chunk leaving host DRAM is written to the NVMe tier. Flash wears
// out with writes; these policies trade hit ratio for device lifetime.
//   admit-all (default): a chunk evicted from DRAM is usually reused later, after it has left DRAM;
//   seen-twice: only chunks read at least once since they were put, or offered before and refused
//               (remembered in a bounded set of recent refusals);
//   write-budget: admit while the bytes written in the current day stay under a budget (token bucket
//                 refilled continuously, at most one day's budget banked).
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "kvtier/api/types.h"

namespace kvtier {

struct AdmissionCandidate {
  ChunkKey key;
  uint32_t ns_id = 0;
  uint64_t bytes = 0;   // record bytes that would be written
  uint32_t hits = 0;    // reads since the chunk was put
};

class AdmissionPolicy {
 public:
  virtual ~AdmissionPolicy() = default;
  virtual std::string_view name() const = 0;
  virtual bool Admit(const AdmissionCandidate& candidate) = 0;
};

std::unique_ptr<AdmissionPolicy> MakeAdmitAll();
std::unique_ptr<AdmissionPolicy> MakeSeenTwice(size_t remembered_refusals = 1 << 16);
// `now_ns` is a monotonic clock (tests inject one).
std::unique_ptr<AdmissionPolicy> MakeWriteBudget(uint64_t bytes_per_day, std::function<int64_t()> now_ns);

}  // namespace kvtier
