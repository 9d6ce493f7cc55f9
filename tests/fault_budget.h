// How fault-injecting test doubles (tests/nvme/faulty_file.h, tests/kvstore/emulated_device_memory.h) decide
// whether the next operation fails: a knob holds how many more operations to fail (0: none, < 0: all).
#pragma once

#include <atomic>

namespace kvtier::testing {

// True when this operation is to fail; spends one from a positive budget. Thread-safe.
inline bool TakeFault(std::atomic<int>& budget) {
  int v = budget.load();
  while (v != 0) {
    if (v < 0) return true;
    if (budget.compare_exchange_weak(v, v - 1)) return true;
  }
  return false;
}

}  // namespace kvtier::testing
