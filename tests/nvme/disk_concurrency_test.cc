// Many threads against a store whose small DRAM tier and small disk force demotion, promotion, region
// reclaim and reinsertion all the time, while chunks are deleted and re-put: every byte that comes back
// is the byte that was put, and the books balance at the end.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "kvtier/kvstore/store.h"

namespace kvtier {
namespace {

ModelFingerprint Fp() {
  ModelFingerprint fp;
  fp.model_id = "disk-concurrency";
  fp.num_layers = 1;
  fp.num_kv_heads = 2;
  fp.head_dim = 128;
  fp.dtype = DType::kFp16;
  fp.chunk_tokens = 128;
  return fp;  // 1 KiB per token
}

std::vector<std::byte> PayloadFor(uint64_t k, size_t bytes) {
  std::vector<std::byte> out(bytes);
  uint64_t x = k * 0x9e3779b97f4a7c15ull + bytes;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return out;
}

TEST(DiskConcurrencyTest, ByteExactUnderDemotionPromotionAndReclaim) {
  const auto dir = std::filesystem::temp_directory_path() / ("kvtier-diskconc-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  StoreOptions o;
  o.host_capacity_bytes = 4ull << 20;
  o.host_prefault = false;
  o.host_huge_pages = false;
  o.disk.path = dir.string();
  o.disk.capacity_bytes = 12ull << 20;  // 12 regions of 1 MiB: reclaim runs constantly
  o.disk.region_bytes = 1ull << 20;
  o.disk.demote_watermark = 0.6;
  o.disk.demote_batch_bytes = 1ull << 20;
  auto store = Store::Open(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto scope = (*store)->OpenScope("t", Fp(), true);
  ASSERT_TRUE(scope.ok());

  constexpr int kThreads = 6;
  constexpr uint64_t kKeys = 120;
  std::atomic<int> wrong{0};
  std::atomic<uint64_t> hits{0}, ops{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 600; ++i) {
        const uint64_t k = rng() % kKeys;
        const size_t tokens = 16 + k % 112;  // 16..127 KiB, so records of many sizes share regions
        const ChunkKey key{42, k};
        switch (rng() % 6) {
          case 0: {
            (void)(*store)->Delete(*scope, std::vector<ChunkKey>{key});
            break;
          }
          case 1:
          case 2: {
            const auto payload = PayloadFor(k, tokens * 1024);
            std::vector<uint32_t> ids(tokens);
            std::iota(ids.begin(), ids.end(), static_cast<uint32_t>(k));
            auto put = (*store)->BeginPut(*scope, {key, ids, CodecId::kRaw, payload.size(), Checksum64(payload), 0, false, nullptr});
            if (put.ok() && put->Append(payload).ok()) (void)put->Commit();
            break;
          }
          default: {
            auto ref = (*store)->Get(*scope, key);
            if (!ref.ok()) {
              ++wrong;
              break;
            }
            if (!*ref) break;
            ++hits;
            const auto expected = PayloadFor(k, tokens * 1024);
            if (ref->payload().size() != expected.size() ||
                std::memcmp(ref->payload().data(), expected.data(), expected.size()) != 0 ||
                ref->token_ids()[0] != static_cast<uint32_t>(k)) {
              ++wrong;
            }
          }
        }
        ++ops;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hits.load(), 100u);
  const StoreStats stats = (*store)->Stats();
  EXPECT_GT(stats.disk.demotions, 0u);
  EXPECT_GT(stats.disk.promotions, 0u);
  EXPECT_EQ(stats.checksum_failures, 0u);
  EXPECT_EQ(stats.disk.read_errors + stats.disk.write_errors, 0u);
  EXPECT_FALSE(stats.disk.failed);
  // After a restart, everything the index holds still reads back exactly.
  store->reset();
  auto reopened = Store::Open(o);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  auto scope2 = (*reopened)->OpenScope("t", Fp(), false);
  for (uint64_t k = 0; k < kKeys; ++k) {
    auto ref = (*reopened)->Get(*scope2, {42, k});
    ASSERT_TRUE(ref.ok());
    if (!*ref) continue;
    const auto expected = PayloadFor(k, (16 + k % 112) * 1024);
    ASSERT_EQ(ref->payload().size(), expected.size());
    ASSERT_EQ(std::memcmp(ref->payload().data(), expected.data(), expected.size()), 0) << k;
  }
  EXPECT_EQ((*reopened)->Stats().checksum_failures, 0u);
  reopened->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier
