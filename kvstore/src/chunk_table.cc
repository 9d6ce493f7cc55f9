#include "chunk_table.h"

#include <bit>
#include <cassert>

namespace kvtier {

ChunkTable::ChunkTable(size_t initial_slots)
    : slots_(std::bit_ceil(initial_slots < 16 ? size_t{16} : initial_slots), nullptr), mask_(slots_.size() - 1) {}

uint64_t ChunkTable::Hash(uint32_t ns_id, const ChunkKey& key) {
  // Keys are usually hashes already, but debug keys typed as hex need not be: mix anyway (murmur3 fmix).
  uint64_t h = key.hi ^ (key.lo * 0x9e3779b97f4a7c15ull) ^ (uint64_t{ns_id} << 32 | ns_id);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

size_t ChunkTable::SlotOf(uint32_t ns_id, const ChunkKey& key) const { return Hash(ns_id, key) & mask_; }

ChunkEntry* ChunkTable::Find(uint32_t ns_id, const ChunkKey& key) const {
  for (size_t i = SlotOf(ns_id, key);; i = (i + 1) & mask_) {
    ChunkEntry* e = slots_[i];
    if (e == nullptr) return nullptr;
    if (e->ns_id == ns_id && e->key == key) return e;
  }
}

void ChunkTable::Insert(ChunkEntry* entry) {
  if ((size_ + 1) * 10 > slots_.size() * 7) Grow();
  size_t i = SlotOf(entry->ns_id, entry->key);
  while (slots_[i] != nullptr) i = (i + 1) & mask_;
  slots_[i] = entry;
  ++size_;
}

void ChunkTable::Erase(const ChunkEntry* entry) {
  size_t i = SlotOf(entry->ns_id, entry->key);
  while (slots_[i] != entry) {
    assert(slots_[i] != nullptr);
    i = (i + 1) & mask_;
  }
  // Backward-shift: pull later members of the probe run into the hole so lookups never stop early.
  size_t hole = i;
  for (size_t j = (hole + 1) & mask_; slots_[j] != nullptr; j = (j + 1) & mask_) {
    const size_t home = SlotOf(slots_[j]->ns_id, slots_[j]->key);
    // Move j into the hole unless its home lies cyclically in (hole, j].
    const bool home_after_hole = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!home_after_hole) {
      slots_[hole] = slots_[j];
      hole = j;
    }
  }
  slots_[hole] = nullptr;
  --size_;
}

void ChunkTable::Grow() {
  std::vector<ChunkEntry*> old;
  old.swap(slots_);
  slots_.assign(old.size() * 2, nullptr);
  mask_ = slots_.size() - 1;
  size_ = 0;
  for (ChunkEntry* e : old) {
    if (e != nullptr) Insert(e);
  }
}

}  // namespace kvtier
