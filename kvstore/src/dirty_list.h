// DirtyList: host chunks that have no disk copy yet, most recently used first, threaded through
// ChunkEntry::dirty_prev/next. The demoter takes its batches from the cold end, so it never walks past
// chunks that are already on disk. Not thread-safe: guarded by Store::mu_.
#pragma once

#include "kvtier/kvstore/chunk_entry.h"

namespace kvtier {

class DirtyList {
 public:
  void PushFront(ChunkEntry* e) {
    if (e->dirty) return;
    e->dirty = true;
    e->dirty_prev = nullptr;
    e->dirty_next = head_;
    if (head_ != nullptr) head_->dirty_prev = e;
    head_ = e;
    if (tail_ == nullptr) tail_ = e;
  }

  void Remove(ChunkEntry* e) {
    if (!e->dirty) return;
    if (e->dirty_prev != nullptr) e->dirty_prev->dirty_next = e->dirty_next;
    else head_ = e->dirty_next;
    if (e->dirty_next != nullptr) e->dirty_next->dirty_prev = e->dirty_prev;
    else tail_ = e->dirty_prev;
    e->dirty_prev = e->dirty_next = nullptr;
    e->dirty = false;
  }

  void Touch(ChunkEntry* e) {
    if (!e->dirty || head_ == e) return;
    Remove(e);
    PushFront(e);
  }

  ChunkEntry* coldest() const { return tail_; }
  static ChunkEntry* warmer(const ChunkEntry* e) { return e->dirty_prev; }

 private:
  ChunkEntry* head_ = nullptr;
  ChunkEntry* tail_ = nullptr;
};

}  // namespace kvtier
