// EvictionPolicy: decides which chunk of a tier to evict next. Pluggable; LRU is the default.
//
// The Store tells the policy about every insert, access and removal of evictable (unpinned) chunks
// and asks it for a victim when a tier is full. The policy only orders entries; whether an entry may
// go right now (leased, being read) is the Store's predicate, which PickVictim must respect.
// Not thread-safe: the Store calls every method under its own mutex.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "kvtier/kvstore/chunk_entry.h"

namespace kvtier {

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual std::string_view name() const = 0;
  virtual void OnInsert(ChunkEntry* entry) = 0;
  virtual void OnAccess(ChunkEntry* entry) = 0;
  virtual void OnRemove(ChunkEntry* entry) = 0;
  // The best victim for which `evictable` is true, or nullptr. Does not remove it.
  virtual ChunkEntry* PickVictim(const std::function<bool(const ChunkEntry&)>& evictable) = 0;
};

// Least recently used: insert and access move an entry to the front; victims come from the back.
std::unique_ptr<EvictionPolicy> MakeLruPolicy();

}  // namespace kvtier
