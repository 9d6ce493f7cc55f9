// Many threads against one server: every byte that comes back is the byte that was put.
#include <atomic>
#include <random>
#include <thread>

#include "integration/test_server.h"

namespace kvtier::testing {
namespace {

class ConcurrencyTest : public ServerFixture {};

// 8 threads put, get and look up overlapping key sets while the tier is small enough to evict.
TEST_F(ConcurrencyTest, EightThreadsByteExactUnderEviction) {
  StartServer(8ull << 20);  // holds ~200 of the 480 chunks below (1..64 KiB each)
  constexpr int kThreads = 8;
  constexpr uint64_t kKeysPerThread = 60;
  constexpr int kRounds = 4;
  const ModelFingerprint fp = TestFingerprint(64);
  std::atomic<uint64_t> hits{0}, misses{0}, verified_bytes{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = NewClient("test", fp);
      std::mt19937 rng(t);
      std::vector<std::byte> dest(64 * 1024);
      for (int round = 0; round < kRounds; ++round) {
        for (uint64_t i = 0; i < kKeysPerThread; ++i) {
          // Sizes vary per key (1..64 tokens) so the allocator sees fragmentation.
          const ChunkKey key{static_cast<uint64_t>(t), i};
          const size_t tokens = 1 + (i * 7 + t) % 64;
          auto put = client->Put(key, TokensFor(key, tokens), PayloadFor(key, tokens * 1024));
          if (!put.ok()) {
            ADD_FAILURE() << "put: " << put.status().ToString();
            ++failures;
            return;
          }
          // Read a random key of a random thread (maybe evicted, maybe not yet written).
          const ChunkKey other{rng() % kThreads, rng() % kKeysPerThread};
          const size_t other_tokens = 1 + (other.lo * 7 + other.hi) % 64;
          auto got = client->Get(other, dest, TokensFor(other, other_tokens));
          if (!got.ok()) {
            ADD_FAILURE() << "get: " << got.status().ToString();
            ++failures;
            return;
          }
          if (got->found) {
            ++hits;
            const auto expected = PayloadFor(other, other_tokens * 1024);
            if (got->bytes != expected.size() || std::memcmp(dest.data(), expected.data(), expected.size()) != 0) {
              ADD_FAILURE() << "wrong bytes for " << other.ToHex();
              ++failures;
            }
            verified_bytes += got->bytes;
          } else {
            ++misses;
          }
          if (i % 10 == 0) {
            std::vector<ChunkKey> chain;
            for (uint64_t j = 0; j < 8; ++j) chain.push_back({static_cast<uint64_t>(t), (i + j) % kKeysPerThread});
            auto lookup = client->Lookup(chain, std::chrono::milliseconds(10));
            if (!lookup.ok() || lookup->leading_hits > chain.size()) {
              ADD_FAILURE() << "lookup failed";
              ++failures;
            }
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(hits.load(), 0u);
  const StoreStats stats = server_->store().Stats();
  EXPECT_GT(stats.tiers[0].evictions, 0u) << "the test is meant to run under eviction pressure";
  EXPECT_EQ(stats.checksum_failures, 0u);
  EXPECT_LE(stats.tiers[0].used_bytes, stats.tiers[0].capacity_bytes);
  // With every client gone, nothing is held: the accounting must balance exactly.
  uint64_t chunks = stats.tiers[0].chunks;
  EXPECT_GT(chunks, 0u);
}

// Readers streaming a chunk while other threads delete and re-put it never see torn bytes.
TEST_F(ConcurrencyTest, DeleteWhileReadingNeverTearsAChunk) {
  StartServer(64ull << 20);
  const ModelFingerprint fp = TestFingerprint(2048);
  const ChunkKey key{99, 1};
  const auto kv = PayloadFor(key, 2048 * 1024);  // 2 MiB: several frames per get
  const auto ids = TokensFor(key, 2048);
  auto writer = NewClient("test", fp);
  ASSERT_TRUE(writer->Put(key, ids, kv).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread churn([&] {
    while (!stop) {
      (void)writer->Delete(std::vector<ChunkKey>{key});
      (void)writer->Put(key, ids, kv);
    }
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      auto reader = NewClient("test", fp);
      std::vector<std::byte> dest(kv.size());
      for (int i = 0; i < 40; ++i) {
        auto got = reader->Get(key, dest);
        if (!got.ok() || (got->found && dest != kv)) ++bad;
      }
    });
  }
  for (auto& r : readers) r.join();
  stop = true;
  churn.join();
  EXPECT_EQ(bad.load(), 0);
}

// A lease keeps a chunk through pressure; once the server's clock passes it, the chunk can go.
TEST_F(ConcurrencyTest, LeaseExpiryOverTheWire) {
  StartServer(4ull << 20);  // 4 MiB: 15 chunks of 256 KiB + a token page
  const ModelFingerprint fp = TestFingerprint(256);
  auto client = NewClient("test", fp);
  const ChunkKey leased{50, 0};
  ASSERT_TRUE(client->Put(leased, TokensFor(leased, 256), PayloadFor(leased, 256 * 1024)).ok());
  auto lookup = client->Lookup(std::vector<ChunkKey>{leased}, std::chrono::milliseconds(2000));
  ASSERT_EQ(lookup->leading_hits, 1u);
  for (uint64_t i = 1; i <= 40; ++i) {
    const ChunkKey key{50, i};
    ASSERT_TRUE(client->Put(key, TokensFor(key, 256), PayloadFor(key, 256 * 1024)).ok());
  }
  EXPECT_TRUE((*client->Exists(std::vector<ChunkKey>{leased}))[0]) << "leased chunk was evicted";
  now_ns_ += 2'000'000'001;  // the lease expires
  for (uint64_t i = 41; i <= 80; ++i) {
    const ChunkKey key{50, i};
    ASSERT_TRUE(client->Put(key, TokensFor(key, 256), PayloadFor(key, 256 * 1024)).ok());
  }
  EXPECT_FALSE((*client->Exists(std::vector<ChunkKey>{leased}))[0]) << "expired lease still protects the chunk";
}

}  // namespace
}  // namespace kvtier::testing
