#include <gtest/gtest.h>

#include <vector>

#include "kvtier/kvstore/eviction_policy.h"

namespace kvtier {
namespace {

TEST(LruPolicyTest, EvictsLeastRecentlyUsedFirst) {
  auto lru = MakeLruPolicy();
  std::vector<ChunkEntry> e(4);
  for (auto& entry : e) lru->OnInsert(&entry);  // order: 3 2 1 0 (front to back)
  auto any = [](const ChunkEntry&) { return true; };
  EXPECT_EQ(lru->PickVictim(any), &e[0]);
  lru->OnAccess(&e[0]);  // 0 3 2 1
  EXPECT_EQ(lru->PickVictim(any), &e[1]);
  lru->OnRemove(&e[1]);  // 0 3 2
  EXPECT_EQ(lru->PickVictim(any), &e[2]);
  // The predicate (leased, being read) skips entries without reordering them.
  EXPECT_EQ(lru->PickVictim([&](const ChunkEntry& x) { return &x != &e[2]; }), &e[3]);
  EXPECT_EQ(lru->PickVictim([](const ChunkEntry&) { return false; }), nullptr);
  lru->OnRemove(&e[0]);
  lru->OnRemove(&e[2]);
  lru->OnRemove(&e[3]);
  EXPECT_EQ(lru->PickVictim(any), nullptr);
}

}  // namespace
}  // namespace kvtier
