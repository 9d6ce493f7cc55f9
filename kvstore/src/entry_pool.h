// EntryPool: recycles ChunkEntry objects so committing a chunk does not call malloc. Entries come in
// slabs of 1024 that live as long as the pool. Not thread-safe: guarded by Store::mu_.
#pragma once

#include <memory>
#include <vector>

#include "kvtier/kvstore/chunk_entry.h"

namespace kvtier {

class EntryPool {
 public:
  ChunkEntry* Acquire() {
    if (free_.empty()) AddSlab();
    ChunkEntry* e = free_.back();
    free_.pop_back();
    return e;
  }

  void Release(ChunkEntry* e) {
    e->Reset();
    free_.push_back(e);
  }

 private:
  static constexpr size_t kSlab = 1024;

  void AddSlab() {
    slabs_.push_back(std::make_unique<ChunkEntry[]>(kSlab));
    free_.reserve(slabs_.size() * kSlab);
    for (size_t i = kSlab; i-- > 0;) free_.push_back(&slabs_.back()[i]);
  }

  std::vector<std::unique_ptr<ChunkEntry[]>> slabs_;
  std::vector<ChunkEntry*> free_;
};

}  // namespace kvtier
