// The GPU tier under faults the emulated device really injects (torn copies to the device, scribbled copies
// to the host, a failed reservation) and with no GPU at all: a chunk is never lost or served corrupt, the
// store keeps serving, and repeated copy errors switch the GPU tier off.
#include <functional>

#include "kvstore/gpu_tier_fixture.h"
#include "kvtier/gpu/device.h"

namespace kvtier::testing {
namespace {

class GpuTierFaultTest : public GpuTierFixture {};

TEST_F(GpuTierFaultTest, ACopyErrorAtCommitLeavesTheChunkInDram) {
  Open(Options());
  knobs_->fail_to_device = 1;
  EXPECT_EQ(PutTier(0, TierKind::kGpu), TierKind::kHost);
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.gpu.write_errors, 1u);
  EXPECT_EQ(stats.gpu.write_bytes, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).chunks, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).used_bytes, 0u) << "the torn placement is freed";
  const Copies c = CopiesOf(0);
  EXPECT_TRUE(c.in_host && !c.in_gpu);
  EXPECT_EQ(Check(0), 1);

  // The fault was transient: the next put gets its GPU copy, and reading it from there gives its bytes,
  // not the torn ones left in the same device range.
  EXPECT_EQ(PutTier(1, TierKind::kGpu), TierKind::kGpu);
  FillHost(100, kPerMiB);
  ASSERT_FALSE(CopiesOf(1).in_host);
  EXPECT_EQ(Check(1), 1);
  EXPECT_EQ(Check(0), 0);  // its DRAM copy was its only one, and DRAM needed the room
}

TEST_F(GpuTierFaultTest, ACopyErrorOnReadIsAMissAndTheChunkStaysOnTheGpu) {
  Open(Options());
  ASSERT_EQ(PutTier(0, TierKind::kGpu), TierKind::kGpu);
  FillHost(100, kPerMiB);
  knobs_->fail_to_host = 1;
  auto ref = store_->Get(scope_, Key(0));
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_FALSE(*ref);
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.gpu.read_errors, 1u);
  EXPECT_EQ(stats.gpu.promotions, 0u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.checksum_failures, 0u);
  const Copies c = CopiesOf(0);
  EXPECT_TRUE(c.indexed && !c.in_host && c.in_gpu);
  EXPECT_EQ(LookupTier(0), TierKind::kGpu);
  EXPECT_EQ(Check(0), 1) << "the scribbled DRAM copy was discarded, the GPU copy is intact";
  EXPECT_EQ(store_->Stats().gpu.promotions, 1u);
}

TEST_F(GpuTierFaultTest, ACopyErrorWhileMakingRoomKeepsTheVictimOnTheGpu) {
  Open(Options());
  for (uint64_t k = 0; k < kPerMiB; ++k) ASSERT_EQ(PutTier(k, TierKind::kGpu), TierKind::kGpu) << k;
  FillHost(100, kPerMiB);
  knobs_->fail_to_host = 1;
  EXPECT_EQ(PutTier(200, TierKind::kGpu), TierKind::kHost);  // no room made: this put stays in DRAM only
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.gpu.read_errors, 1u);
  EXPECT_EQ(stats.gpu.demotions, 0u);
  EXPECT_EQ(stats.gpu.dropped, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).evictions, 0u) << "nothing left the GPU";
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).chunks, kPerMiB);
  Copies c = CopiesOf(0);
  EXPECT_TRUE(!c.in_host && c.in_gpu);
  EXPECT_EQ(Check(0), 1);
  EXPECT_EQ(Check(200), 1);

  // Chunk 0 was just read (the most recent GPU chunk); the next room comes from chunk 1.
  EXPECT_EQ(PutTier(201, TierKind::kGpu), TierKind::kGpu);
  EXPECT_EQ(store_->Stats().gpu.demotions, 1u);
  c = CopiesOf(1);
  EXPECT_TRUE(c.in_host && !c.in_gpu);
  for (uint64_t k = 0; k < kPerMiB; ++k) EXPECT_EQ(Check(k), 1) << k;
}

TEST_F(GpuTierFaultTest, RepeatedCopyErrorsDisableTheTierAndTheStoreCarriesOn) {
  Open(Options());  // max_consecutive_errors 3
  ASSERT_EQ(PutTier(0, TierKind::kGpu), TierKind::kGpu);
  FillHost(100, kPerMiB);
  ASSERT_FALSE(CopiesOf(0).in_host);              // GPU only
  ASSERT_EQ(PutTier(1, TierKind::kGpu), TierKind::kGpu);  // in DRAM and on the GPU
  knobs_->fail_to_device = -1;
  EXPECT_EQ(PutTier(2, TierKind::kGpu), TierKind::kHost);
  EXPECT_EQ(PutTier(3, TierKind::kGpu), TierKind::kHost);
  EXPECT_FALSE(store_->Stats().gpu.failed);
  EXPECT_EQ(PutTier(4, TierKind::kGpu), TierKind::kHost);
  const StoreStats stats = store_->Stats();
  EXPECT_TRUE(stats.gpu.failed);
  EXPECT_EQ(stats.gpu.write_errors, 3u);
  EXPECT_EQ(stats.gpu.dropped, 1u);  // chunk 0 had no other copy
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).chunks, 0u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).used_bytes, 0u);
  EXPECT_EQ(Check(0), 0);
  EXPECT_EQ(Check(1), 1);  // kept its DRAM copy
  EXPECT_FALSE(CopiesOf(1).in_gpu);
  for (uint64_t k = 2; k <= 4; ++k) EXPECT_EQ(Check(k), 1) << k;

  const uint64_t copies = knobs_->to_device.load();
  EXPECT_EQ(PutTier(5, TierKind::kGpu), TierKind::kHost);
  EXPECT_EQ(knobs_->to_device.load(), copies) << "a disabled tier is not tried";
  EXPECT_EQ(Check(5), 1);
}

TEST_F(GpuTierFaultTest, AFailedReservationMeansNoGpuTier) {
  knobs_->fail_open = true;
  Open(Options());
  const StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.tiers.size(), 1u);
  EXPECT_EQ(TierOf(stats, TierKind::kGpu).kind, TierKind::kNone);
  EXPECT_FALSE(stats.gpu.enabled);
  EXPECT_NE(stats.gpu.unavailable.find("out of memory"), std::string::npos) << stats.gpu.unavailable;
  EXPECT_EQ(PutTier(0, TierKind::kGpu), TierKind::kHost);
  EXPECT_EQ(Check(0), 1);
}

TEST_F(GpuTierFaultTest, WithoutAGpuTheRealProbeLeavesTheTierOff) {
  if (gpu::GpuAvailable()) GTEST_SKIP() << "this machine has a GPU";
  StoreOptions o = Options();
  o.gpu.open_device = nullptr;  // the real CUDA path
  Open(std::move(o));
  const StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.tiers.size(), 1u);
  EXPECT_FALSE(stats.gpu.enabled);
  EXPECT_NE(stats.gpu.unavailable.find("no usable GPU"), std::string::npos) << stats.gpu.unavailable;
  EXPECT_EQ(stats.gpu.host_registered_bytes, 0u);
  EXPECT_EQ(PutTier(0, TierKind::kGpu), TierKind::kHost);
  EXPECT_EQ(Check(0), 1);
  EXPECT_EQ(OpenCudaDeviceMemory(0, 1 * kMiB).status().code(), StatusCode::kUnavailable);
}

TEST_F(GpuTierFaultTest, PutsMayAskForDramOrTheGpuOnly) {
  Open(Options());
  EXPECT_EQ(Put(0, TierKind::kNvme).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Put(0, static_cast<TierKind>(200)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(0), 0);
}

TEST_F(GpuTierFaultTest, OptionsAreValidated) {
  for (auto tweak : std::vector<std::function<void(GpuOptions&)>>{
           [](GpuOptions& g) { g.placement = "hot"; }, [](GpuOptions& g) { g.capacity_bytes = 4096; },
           [](GpuOptions& g) { g.max_consecutive_errors = 0; }, [](GpuOptions& g) { g.device = -1; }}) {
    StoreOptions o = Options();
    tweak(o.gpu);
    EXPECT_EQ(Store::Open(std::move(o)).status().code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace kvtier::testing
