#include "chunk_table.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <set>
#include <vector>

namespace kvtier {
namespace {

TEST(ChunkTableTest, InsertFindEraseAcrossGrowth) {
  ChunkTable table(16);
  std::vector<std::unique_ptr<ChunkEntry>> entries;
  for (uint64_t i = 0; i < 5000; ++i) {
    auto e = std::make_unique<ChunkEntry>();
    e->ns_id = static_cast<uint32_t>(i % 3 + 1);
    e->key = ChunkKey{i / 7, i};  // low-entropy keys, as typed by hand
    table.Insert(e.get());
    entries.push_back(std::move(e));
  }
  EXPECT_EQ(table.size(), 5000u);
  for (const auto& e : entries) EXPECT_EQ(table.Find(e->ns_id, e->key), e.get());
  // Same key, other namespace: not found.
  EXPECT_EQ(table.Find(99, entries[0]->key), nullptr);
  // Erase a random half; the rest must stay reachable (backward-shift deletion keeps probe runs intact).
  std::mt19937 rng(3);
  std::set<size_t> erased;
  while (erased.size() < 2500) {
    const size_t i = rng() % entries.size();
    if (erased.insert(i).second) table.Erase(entries[i].get());
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(table.Find(entries[i]->ns_id, entries[i]->key), erased.count(i) ? nullptr : entries[i].get());
  }
  size_t seen = 0;
  table.ForEach([&](const ChunkEntry&) { ++seen; });
  EXPECT_EQ(seen, 2500u);
}

}  // namespace
}  // namespace kvtier
