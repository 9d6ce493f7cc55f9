// ThreadPoolExecutor: every index exactly once, concurrent callers, nesting, and decode equality.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "codec_test_util.h"
#include "kvtier/codec/executor.h"

namespace kvtier::codec {
namespace {

TEST(ThreadPoolExecutor, RunsEveryIndexOnce) {
  for (size_t threads : {1, 2, 4}) {
    ThreadPoolExecutor pool(threads);
    EXPECT_EQ(pool.Concurrency(), threads);
    for (size_t n : {0, 1, 2, 3, 17, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](size_t i) { hits[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " i " << i;
    }
  }
}

TEST(ThreadPoolExecutor, DefaultUsesTheMachine) {
  ThreadPoolExecutor pool;
  EXPECT_GE(pool.Concurrency(), 1u);
}

TEST(ThreadPoolExecutor, ConcurrentCallersEachGetTheirOwnJob) {
  ThreadPoolExecutor pool(3);
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&, c] {
      for (int round = 0; round < 200; ++round) {
        const size_t n = 1 + (c * 31 + round) % 50;
        std::vector<std::atomic<int>> hits(n);
        pool.ParallelFor(n, [&](size_t i) { hits[i].fetch_add(1); });
        for (size_t i = 0; i < n; ++i) {
          if (hits[i].load() != 1) failures.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ThreadPoolExecutor, NestedParallelForCompletes) {
  ThreadPoolExecutor pool(2);
  std::atomic<int> total{0};
  pool.ParallelFor(4, [&](size_t) { pool.ParallelFor(8, [&](size_t) { total.fetch_add(1); }); });
  EXPECT_EQ(total.load(), 32);
}

TEST(ThreadPoolExecutor, ParallelDecodeEqualsInlineDecode) {
  const KvShape s{6, 4, 32, 48, DType::kFp16};
  const testing::TestKv kv = testing::MakeKv(s);
  ThreadPoolExecutor pool(4);
  InlineExecutor inline_executor;
  for (CodecId c : kAllCodecs) {
    EncodeOptions o;
    o.codec = c;
    o.max_tokens_per_stream = 16;
    std::vector<std::byte> enc;
    ASSERT_TRUE(Encode(kv.View(), o, enc).ok()) << CodecName(c);
    std::vector<std::byte> a(s.RawBytes()), b(s.RawBytes());
    DecodeOptions d;
    d.executor = &inline_executor;
    ASSERT_TRUE(Decode(enc, a, d).ok());
    // Several threads decode the same container at once through one pool.
    std::vector<std::thread> threads;
    std::vector<std::vector<std::byte>> outs(3, std::vector<std::byte>(s.RawBytes()));
    std::atomic<int> failures{0};
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        DecodeOptions p;
        p.executor = &pool;
        if (!Decode(enc, outs[t], p).ok()) failures.fetch_add(1);
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    for (const auto& out : outs) EXPECT_EQ(out, a) << CodecName(c);
  }
}

}  // namespace
}  // namespace kvtier::codec
