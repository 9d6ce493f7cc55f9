#include "kvtier/kvstore/extent_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace kvtier {
namespace {

TEST(ExtentAllocatorTest, RoundsToUnitsAndRunsOut) {
  ExtentAllocator a(64 * 4096);
  auto e = a.Allocate(1);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->length, 4096u);
  auto big = a.Allocate(63 * 4096);
  ASSERT_TRUE(big);
  EXPECT_EQ(a.used_bytes(), a.capacity_bytes());
  EXPECT_FALSE(a.Allocate(1));
  a.Free(*e);
  EXPECT_TRUE(a.Allocate(4096));
}

TEST(ExtentAllocatorTest, CoalescesNeighbours) {
  ExtentAllocator a(8 * 4096);
  std::vector<ExtentAllocator::Extent> all;
  for (int i = 0; i < 8; ++i) all.push_back(*a.Allocate(4096));
  // Free in an order that needs merging on both sides.
  for (int i : {1, 3, 2, 0, 6, 7, 5, 4}) a.Free(all[i]);
  EXPECT_EQ(a.used_bytes(), 0u);
  EXPECT_EQ(a.free_extents(), 1u);
  EXPECT_EQ(a.largest_free_bytes(), 8u * 4096);
}

TEST(ExtentAllocatorTest, BestFitPrefersTheSmallestHole) {
  ExtentAllocator a(16 * 4096);
  auto a1 = *a.Allocate(4 * 4096);
  auto keep1 = *a.Allocate(4096);
  auto a2 = *a.Allocate(2 * 4096);
  auto keep2 = *a.Allocate(4096);
  a.Free(a1);  // hole of 4 units at 0
  a.Free(a2);  // hole of 2 units at 5
  auto fit = a.Allocate(2 * 4096);
  ASSERT_TRUE(fit);
  EXPECT_EQ(fit->offset, a2.offset);
  (void)keep1;
  (void)keep2;
}

TEST(ExtentAllocatorTest, RandomOperationsNeverOverlap) {
  constexpr uint64_t kUnits = 1024;
  ExtentAllocator a(kUnits * 4096);
  std::mt19937 rng(7);
  std::vector<ExtentAllocator::Extent> live;
  std::vector<int> owner(kUnits, -1);
  for (int step = 0; step < 20000; ++step) {
    if (!live.empty() && (rng() % 2 == 0 || a.largest_free_bytes() == 0)) {
      const size_t i = rng() % live.size();
      for (uint64_t u = live[i].offset / 4096; u < (live[i].offset + live[i].length) / 4096; ++u) owner[u] = -1;
      a.Free(live[i]);
      live.erase(live.begin() + static_cast<long>(i));
    } else if (auto e = a.Allocate((rng() % 16 + 1) * 4096 - rng() % 4096)) {
      for (uint64_t u = e->offset / 4096; u < (e->offset + e->length) / 4096; ++u) {
        ASSERT_EQ(owner[u], -1) << "unit " << u << " handed out twice";
        owner[u] = step;
      }
      live.push_back(*e);
    }
    uint64_t used = 0;
    for (const auto& e : live) used += e.length;
    ASSERT_EQ(used, a.used_bytes());
  }
  for (const auto& e : live) a.Free(e);
  EXPECT_EQ(a.free_extents(), 1u);
}

}  // namespace
}  // namespace kvtier
