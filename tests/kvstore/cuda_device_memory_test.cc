// The GPU tier on a real GPU (label gpu): the CUDA DeviceMemory (kvtier::gpu::DeviceArena) moves bytes exactly
// at any offset and refuses ranges past its end, and a Store opened with the real CUDA path puts, evicts and
// reads back a chunk through device memory, with its host arena registered. Every test skips, saying why,
// on a machine without a GPU. The same tests run in every build on the emulated gpu/ library
// (gpu_tier_emulation_tests).
#include <random>

#include "kvstore/gpu_tier_fixture.h"
#include "kvtier/gpu/device.h"

namespace kvtier::testing {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (!gpu::GpuAvailable()) GTEST_SKIP() << "no GPU: " << gpu::CachedProbe().reason

TEST(CudaDeviceMemory, CopiesRoundTripAtAnyOffset) {
  SKIP_WITHOUT_GPU();
  auto memory = OpenCudaDeviceMemory(0, 4 * kMiB);
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  DeviceMemory& m = **memory;
  EXPECT_EQ(m.size(), 4 * kMiB);
  EXPECT_NE(m.base(), nullptr);
  EXPECT_NE(m.name().find("(device 0)"), std::string::npos) << m.name();
  std::mt19937_64 rng(5);
  for (uint64_t offset : {uint64_t{0}, uint64_t{1}, uint64_t{4097}, 4 * kMiB - 1000}) {
    std::vector<std::byte> src(offset == 0 ? kMiB + 13 : 1000);
    for (auto& b : src) b = static_cast<std::byte>(rng());
    ASSERT_TRUE(m.CopyToDevice(offset, src).ok()) << offset;
    std::vector<std::byte> back(src.size(), std::byte{0xff});
    ASSERT_TRUE(m.CopyToHost(offset, back).ok()) << offset;
    EXPECT_EQ(back, src) << "offset " << offset;
  }
  std::vector<std::byte> eleven(11);
  EXPECT_EQ(m.CopyToDevice(4 * kMiB - 10, eleven).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m.CopyToHost(4 * kMiB - 10, eleven).code(), StatusCode::kInvalidArgument);
  const int devices = static_cast<int>(gpu::CachedProbe().devices.size());
  EXPECT_EQ(OpenCudaDeviceMemory(devices, kMiB).status().code(), StatusCode::kInvalidArgument);
}

class CudaGpuTierTest : public GpuTierFixture {};

TEST_F(CudaGpuTierTest, AStoreMovesChunksThroughDeviceMemory) {
  SKIP_WITHOUT_GPU();
  StoreOptions o = Options(1 * kMiB, 2 * kMiB);
  o.gpu.device = 0;
  o.gpu.open_device = nullptr;  // the real CUDA path
  Open(std::move(o));
  StoreStats stats = store_->Stats();
  ASSERT_TRUE(stats.gpu.enabled) << stats.gpu.unavailable;
  EXPECT_EQ(stats.gpu.host_registered_bytes, 1 * kMiB) << "the host arena is pinned";
  ASSERT_EQ(PutTier(0, TierKind::kGpu), TierKind::kGpu);
  FillHost(100, kPerMiB);
  ASSERT_FALSE(CopiesOf(0).in_host);
  EXPECT_EQ(Check(0), 1);
  for (uint64_t k = 1; k <= 2 * kPerMiB; ++k) ASSERT_EQ(PutTier(k, TierKind::kGpu), TierKind::kGpu) << k;
  for (uint64_t k = 1; k <= 2 * kPerMiB; ++k) EXPECT_EQ(Check(k), 1) << k;
  stats = store_->Stats();
  EXPECT_EQ(stats.gpu.read_errors + stats.gpu.write_errors, 0u);
  EXPECT_FALSE(stats.gpu.failed);
}

}  // namespace
}  // namespace kvtier::testing
