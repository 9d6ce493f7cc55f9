// The GPU tier inside the Store, over the emulated device (runs everywhere): where puts land, a GPU copy
// standing in for an evicted DRAM copy, room made on the GPU by moving its least recent chunk to DRAM,
// pinned chunks, deletion under a reader, reads with a disk copy too, and concurrent traffic. Every read
// is compared byte for byte with what was put.
#include <random>
#include <thread>

#include "kvstore/gpu_tier_fixture.h"

namespace kvtier::testing {
namespace {

class GpuTierStoreTest : public GpuTierFixture {};

TEST_F(GpuTierStoreTest, APutAskingForTheGpuLandsThereAndReadsBackByteExact) {
  Open(Options());
  EXPECT_EQ(knobs_->opened_device.load(), 3);
  EXPECT_EQ(PutTier(1, TierKind::kGpu), TierKind::kGpu);
  EXPECT_EQ(PutTier(2), TierKind::kHost);  // on-request: other puts stay in DRAM only
  EXPECT_EQ(PutTier(3, TierKind::kHost), TierKind::kHost);
  EXPECT_EQ(knobs_->to_device.load(), 1u);
  const Copies one = CopiesOf(1);
  EXPECT_TRUE(one.in_host && one.in_gpu && !one.on_disk);
  EXPECT_FALSE(CopiesOf(2).in_gpu);
  EXPECT_EQ(LookupTier(1), TierKind::kHost);  // reads are served from DRAM while it has a copy
  EXPECT_EQ(Check(1), 1);

  const StoreStats stats = store_->Stats();
  ASSERT_EQ(stats.tiers.size(), 2u);
  EXPECT_EQ(stats.tiers[1].kind, TierKind::kGpu);
  EXPECT_EQ(stats.tiers[1].capacity_bytes, 1 * kMiB);
  EXPECT_EQ(stats.tiers[1].used_bytes, kChunkUnits * 4096);
  EXPECT_EQ(stats.tiers[1].chunks, 1u);
  EXPECT_EQ(stats.tiers[1].hits, 0u);
  EXPECT_TRUE(stats.gpu.enabled);
  EXPECT_FALSE(stats.gpu.failed);
  EXPECT_EQ(stats.gpu.device, "emulated GPU (device 3)");
  EXPECT_EQ(stats.gpu.write_bytes, 128 + kPayloadBytes);  // token ids (padded to 64 bytes) and payload

  // A second put of a stored key is a no-op, GPU or not.
  auto again = Put(1, TierKind::kGpu);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_present);
  EXPECT_EQ(again->tier, TierKind::kNone);
  EXPECT_EQ(knobs_->to_device.load(), 1u);
}

TEST_F(GpuTierStoreTest, PlacementAllCopiesEveryPut) {
  StoreOptions o = Options();
  o.gpu.placement = "all";
  Open(std::move(o));
  EXPECT_EQ(PutTier(1), TierKind::kGpu);
  EXPECT_EQ(PutTier(2, TierKind::kHost), TierKind::kGpu);
  EXPECT_EQ(Gpu().chunks, 2u);
}

TEST_F(GpuTierStoreTest, EvictingTheDramCopyKeepsTheChunkReadableFromTheGpu) {
  Open(Options());
  ASSERT_EQ(PutTier(0, TierKind::kGpu), TierKind::kGpu);
  FillHost(100, kPerMiB);  // chunk 0 is the least recent DRAM chunk: its DRAM copy goes
  Copies c = CopiesOf(0);
  EXPECT_TRUE(c.indexed && !c.in_host && c.in_gpu);
  EXPECT_EQ(LookupTier(0), TierKind::kGpu);
  EXPECT_EQ(TierOf(store_->Stats(), TierKind::kHost).evictions, 1u);

  EXPECT_EQ(Check(0), 1);  // copied back to DRAM, then served
  const StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.gpu.promotions, 1u);
  EXPECT_EQ(stats.gpu.read_bytes, 128 + kPayloadBytes);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).hits, 1u);
  c = CopiesOf(0);
  EXPECT_TRUE(c.in_host && c.in_gpu);  // the GPU copy stays
  EXPECT_EQ(Check(0), 1);
  EXPECT_EQ(TierOf(store_->Stats(), TierKind::kHost).hits, 1u);
  // The room for the copy back came from the least recent DRAM chunk, which had no other copy.
  EXPECT_EQ(Check(100), 0);
}

TEST_F(GpuTierStoreTest, AFullGpuMovesItsLeastRecentChunkToDram) {
  Open(Options());
  for (uint64_t k = 0; k < kPerMiB; ++k) ASSERT_EQ(PutTier(k, TierKind::kGpu), TierKind::kGpu) << k;
  FillHost(100, kPerMiB);  // every GPU chunk loses its DRAM copy: the GPU holds the only one
  for (uint64_t k = 0; k < kPerMiB; ++k) ASSERT_FALSE(CopiesOf(k).in_host) << k;

  EXPECT_EQ(PutTier(200, TierKind::kGpu), TierKind::kGpu);
  Copies c = CopiesOf(0);
  EXPECT_TRUE(c.in_host && !c.in_gpu) << "the least recent GPU chunk moved to DRAM";
  c = CopiesOf(1);
  EXPECT_TRUE(!c.in_host && c.in_gpu);
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.gpu.demotions, 1u);
  EXPECT_EQ(stats.gpu.dropped, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).evictions, 1u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).chunks, kPerMiB);
  EXPECT_EQ(Check(0), 1);

  // Reading chunk 1 makes it the most recent GPU chunk, so room for the next put comes from chunk 2.
  EXPECT_EQ(Check(1), 1);
  EXPECT_EQ(PutTier(201, TierKind::kGpu), TierKind::kGpu);
  c = CopiesOf(2);
  EXPECT_TRUE(c.in_host && !c.in_gpu);
  EXPECT_TRUE(CopiesOf(1).in_gpu);
  EXPECT_EQ(store_->Stats().gpu.demotions, 2u);
  for (uint64_t k = 0; k < kPerMiB; ++k) EXPECT_EQ(Check(k), 1) << "chunk " << k << " was lost";
  EXPECT_EQ(store_->Stats().checksum_failures, 0u);
}

TEST_F(GpuTierStoreTest, AGpuOnlyChunkWithNoRoomInDramIsDroppedAndCounted) {
  StoreOptions o = Options();
  o.shared_arena_bytes["other"] = 1 * kMiB;  // its own DRAM pool; the GPU is shared
  Open(std::move(o));
  for (uint64_t k = 0; k < kPerMiB; ++k) ASSERT_EQ(PutTier(k, TierKind::kGpu), TierKind::kGpu) << k;
  for (uint64_t k = 100; k < 100 + kPerMiB; ++k) ASSERT_EQ(PutTier(k, TierKind::kNone, /*pin=*/true), TierKind::kHost);
  ASSERT_FALSE(CopiesOf(0).in_host);  // the main DRAM pool is all pinned chunks; the GPU holds 0..14 alone
  auto other = store_->OpenScope("other", GpuTestFp(), true);
  ASSERT_TRUE(other.ok());
  auto outcome = PutIn(*other, 200, TierKind::kGpu, false);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->tier, TierKind::kGpu);
  const StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.gpu.dropped, 1u);
  EXPECT_EQ(stats.gpu.demotions, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).evictions, 1u);
  EXPECT_EQ(Check(0), 0) << "nowhere to go: the least recent GPU chunk left the cache";
  for (uint64_t k = 1; k < kPerMiB; ++k) EXPECT_TRUE(CopiesOf(k).in_gpu) << k;
}

TEST_F(GpuTierStoreTest, PinnedChunksStayOnTheGpu) {
  Open(Options(2 * kMiB, 1 * kMiB));  // DRAM holds all 30 chunks
  ASSERT_EQ(PutTier(0, TierKind::kGpu, /*pin=*/true), TierKind::kGpu);
  for (uint64_t k = 1; k < 2 * kPerMiB; ++k) ASSERT_EQ(PutTier(k, TierKind::kGpu), TierKind::kGpu) << k;
  EXPECT_TRUE(CopiesOf(0).in_gpu);
  StoreStats stats = store_->Stats();
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).chunks, kPerMiB);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).pinned_chunks, 1u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).evictions, kPerMiB);  // 29 GPU chunks, room for 14 besides the pin
  EXPECT_EQ(stats.gpu.demotions, 0u);  // every victim still had its DRAM copy: nothing to move

  auto deleted = store_->Delete(scope_, std::vector<ChunkKey>{Key(0)});
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1u);
  stats = store_->Stats();
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).pinned_chunks, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).chunks, kPerMiB - 1);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).used_bytes, (kPerMiB - 1) * kChunkUnits * 4096);
}

TEST_F(GpuTierStoreTest, AGpuFullOfPinnedChunksLeavesPutsInDram) {
  Open(Options(2 * kMiB, 1 * kMiB));
  for (uint64_t k = 0; k < kPerMiB; ++k) ASSERT_EQ(PutTier(k, TierKind::kGpu, true), TierKind::kGpu) << k;
  EXPECT_EQ(PutTier(kPerMiB, TierKind::kGpu), TierKind::kHost);
  EXPECT_EQ(Check(kPerMiB), 1);
  for (uint64_t k = 0; k < kPerMiB; ++k) EXPECT_TRUE(CopiesOf(k).in_gpu) << k;
}

TEST_F(GpuTierStoreTest, AChunkDeletedWhileReadStaysIntactUntilTheReaderLetsGo) {
  Open(Options());
  ASSERT_EQ(PutTier(0, TierKind::kGpu), TierKind::kGpu);
  FillHost(100, kPerMiB);
  ASSERT_FALSE(CopiesOf(0).in_host);
  auto ref = store_->Get(scope_, Key(0));
  ASSERT_TRUE(ref.ok() && *ref);
  auto deleted = store_->Delete(scope_, std::vector<ChunkKey>{Key(0)});
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1u);
  EXPECT_FALSE(CopiesOf(0).indexed);
  EXPECT_EQ(Gpu().chunks, 0u);
  EXPECT_EQ(Gpu().used_bytes, kChunkUnits * 4096) << "the GPU placement goes with the last reference";
  EXPECT_TRUE(SameAsPut(*ref, 0));
  *ref = ChunkRef();
  EXPECT_EQ(Gpu().used_bytes, 0u);
  EXPECT_EQ(Check(0), 0);

  // Without a reader the GPU bytes of a GPU-only chunk are free at once.
  ASSERT_EQ(PutTier(1, TierKind::kGpu), TierKind::kGpu);
  FillHost(200, kPerMiB);
  ASSERT_FALSE(CopiesOf(1).in_host);
  ASSERT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{Key(1)}), 1u);
  EXPECT_EQ(Gpu().used_bytes, 0u);
}

TEST_F(GpuTierStoreTest, ReadsPreferTheGpuCopyAndRoomOnTheGpuDropsCopiesThatLiveOnDisk) {
  StoreOptions o = Options();
  WithDisk(o);
  Open(std::move(o));
  ASSERT_EQ(PutTier(0, TierKind::kGpu), TierKind::kGpu);
  ASSERT_EQ(store_->DemoteAll(), 1u);
  FillHost(100, kPerMiB);
  Copies c = CopiesOf(0);
  ASSERT_TRUE(!c.in_host && c.in_gpu && c.on_disk);
  EXPECT_EQ(LookupTier(0), TierKind::kGpu);
  EXPECT_EQ(Check(0), 1);
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.gpu.promotions, 1u);
  EXPECT_EQ(stats.disk.promotions, 0u);

  // Fifteen more GPU chunks: chunk 0 is the least recent there, and its disk copy survives, so its GPU
  // copy is just dropped.
  for (uint64_t k = 1; k <= kPerMiB; ++k) ASSERT_EQ(PutTier(k, TierKind::kGpu), TierKind::kGpu) << k;
  c = CopiesOf(0);
  EXPECT_FALSE(c.in_gpu);
  EXPECT_TRUE(c.on_disk);
  stats = store_->Stats();
  EXPECT_EQ(stats.gpu.demotions, 0u);
  EXPECT_GE(TierOf(stats, TierKind::kGpu).evictions, 1u);
  EXPECT_EQ(Check(0), 1);
  EXPECT_EQ(store_->Stats().checksum_failures, 0u);
}

TEST_F(GpuTierStoreTest, ConcurrentPutsReadsAndDeletesServeExactBytesAndLeakNothing) {
  Open(Options(2 * kMiB, 1 * kMiB));
  constexpr uint64_t kKeys = 40;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t) * 7919 + 1);
      for (int i = 0; i < 300; ++i) {
        const uint64_t k = rng() % kKeys;
        switch (rng() % 4) {
          case 0:
          case 1: {
            auto outcome = Put(k, rng() % 2 == 0 ? TierKind::kGpu : TierKind::kNone);
            EXPECT_TRUE(outcome.ok()) << outcome.status().ToString();
            break;
          }
          case 2:
            (void)Check(k);  // fails the test on wrong bytes
            break;
          default:
            EXPECT_TRUE(store_->Delete(scope_, std::vector<ChunkKey>{Key(k)}).ok());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (uint64_t k = 0; k < kKeys; ++k) ASSERT_TRUE(store_->Delete(scope_, std::vector<ChunkKey>{Key(k)}).ok());
  const StoreStats stats = store_->Stats();
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).used_bytes, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).chunks, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kHost).used_bytes, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kHost).chunks, 0u);
  EXPECT_EQ(stats.checksum_failures, 0u);
}

}  // namespace
}  // namespace kvtier::testing
