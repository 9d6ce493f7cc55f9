// EntryList: an intrusive doubly linked list of ChunkEntry, most recently used first, threaded through the
// entry's own link members (no allocation). The Store keeps several (chunks to demote to disk, GPU copies
// in LRU order); each names its members as template arguments. Not thread-safe: guarded by Store::mu_.
#pragma once

#include "kvtier/kvstore/chunk_entry.h"

namespace kvtier {

template <ChunkEntry* ChunkEntry::*Prev, ChunkEntry* ChunkEntry::*Next, bool ChunkEntry::*Linked>
class EntryList {
 public:
  void PushFront(ChunkEntry* e) {
    if (e->*Linked) return;
    e->*Linked = true;
    e->*Prev = nullptr;
    e->*Next = head_;
    if (head_ != nullptr) head_->*Prev = e;
    head_ = e;
    if (tail_ == nullptr) tail_ = e;
  }

  void Remove(ChunkEntry* e) {
    if (!(e->*Linked)) return;
    if (e->*Prev != nullptr) (e->*Prev)->*Next = e->*Next;
    else head_ = e->*Next;
    if (e->*Next != nullptr) (e->*Next)->*Prev = e->*Prev;
    else tail_ = e->*Prev;
    e->*Prev = e->*Next = nullptr;
    e->*Linked = false;
  }

  void Touch(ChunkEntry* e) {
    if (!(e->*Linked) || head_ == e) return;
    Remove(e);
    PushFront(e);
  }

  ChunkEntry* coldest() const { return tail_; }
  static ChunkEntry* warmer(const ChunkEntry* e) { return e->*Prev; }

 private:
  ChunkEntry* head_ = nullptr;
  ChunkEntry* tail_ = nullptr;
};

}  // namespace kvtier
