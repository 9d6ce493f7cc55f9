#include "kvtier/kvstore/eviction_policy.h"

namespace kvtier {
namespace {

// Intrusive doubly linked list through ChunkEntry::policy_prev/next; head is the most recent.
class LruPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "lru"; }

  void OnInsert(ChunkEntry* e) override { PushFront(e); }

  void OnAccess(ChunkEntry* e) override {
    if (head_ == e) return;
    Unlink(e);
    PushFront(e);
  }

  void OnRemove(ChunkEntry* e) override { Unlink(e); }

  ChunkEntry* PickVictim(const std::function<bool(const ChunkEntry&)>& evictable) override {
    for (ChunkEntry* e = tail_; e != nullptr; e = e->policy_prev) {
      if (evictable(*e)) return e;
    }
    return nullptr;
  }

 private:
  void PushFront(ChunkEntry* e) {
    e->policy_prev = nullptr;
    e->policy_next = head_;
    if (head_ != nullptr) head_->policy_prev = e;
    head_ = e;
    if (tail_ == nullptr) tail_ = e;
  }

  void Unlink(ChunkEntry* e) {
    if (e->policy_prev != nullptr) e->policy_prev->policy_next = e->policy_next;
    else head_ = e->policy_next;
    if (e->policy_next != nullptr) e->policy_next->policy_prev = e->policy_prev;
    else tail_ = e->policy_prev;
    e->policy_prev = e->policy_next = nullptr;
  }

  ChunkEntry* head_ = nullptr;
  ChunkEntry* tail_ = nullptr;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeLruPolicy() { return std::make_unique<LruPolicy>(); }

}  // namespace kvtier
