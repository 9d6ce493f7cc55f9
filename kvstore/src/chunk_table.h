// ChunkTable: the Store's index from (namespace id, chunk key) to ChunkEntry, an open-addressing
// hash table with linear probing and backward-shift deletion. Slots hold entry pointers only (the
// entry carries its own key), so the table is 8 bytes per slot and never allocates per insert; it
// doubles when 70% full. Not thread-safe: guarded by Store::mu_.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvtier/kvstore/chunk_entry.h"

namespace kvtier {

class ChunkTable {
 public:
  explicit ChunkTable(size_t initial_slots = 1024);

  ChunkEntry* Find(uint32_t ns_id, const ChunkKey& key) const;
  void Insert(ChunkEntry* entry);  // the key must not be present
  void Erase(const ChunkEntry* entry);
  size_t size() const { return size_; }

  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (ChunkEntry* e : slots_) {
      if (e != nullptr) fn(*e);
    }
  }

 private:
  static uint64_t Hash(uint32_t ns_id, const ChunkKey& key);
  size_t SlotOf(uint32_t ns_id, const ChunkKey& key) const;
  void Grow();

  std::vector<ChunkEntry*> slots_;
  size_t mask_;
  size_t size_ = 0;
};

}  // namespace kvtier
