// The GPU tier through a real server: prefer_tier on the wire, PutResult.tier, reads served from the GPU
// copy byte-exact, Stats and Lookup naming TIER_GPU, and the tier="gpu" series on a real /metrics scrape.
// The device is the emulated one (tests/kvstore/emulated_device_memory.h), so this runs without a GPU; a
// server asked for a GPU tier on a machine without a GPU starts without one.
#include "integration/scrape.h"
#include "integration/test_server.h"
#include "kvstore/emulated_device_memory.h"
#include "kvtier/api/convert.h"
#include "kvtier/gpu/device.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kChunkBytes = 16 * 1024;  // TestFingerprint(): 16 tokens of 1 KiB
constexpr uint64_t kHostChunks = 51;         // a 1 MiB arena holds 51 chunks of 5 units of 4 KiB

class GpuTierServiceTest : public ServerFixture {
 protected:
  void StartWithGpu() {
    StartServer(1ull << 20, [this](ServerConfig& c) {
      c.metrics_listen = "127.0.0.1:0";
      c.store.gpu.capacity_bytes = 1ull << 20;
      c.store.gpu.open_device = OpenEmulatedDevice(knobs_);
    });
  }

  // One chunk over a raw stream, so the test sees the PutResult the server sent.
  v1::PutResult RawPut(const ChunkKey& key, v1::Tier prefer, grpc::Status* status) {
    const auto payload = PayloadFor(key, kChunkBytes);
    v1::PutRequest header = PutHeaderFor(Context(), key, payload, TokensFor(key, 16));
    header.mutable_header()->set_prefer_tier(prefer);
    v1::PutResponse response;
    *status = PutRaw(header, payload, &response);
    return response.results_size() == 1 ? response.results(0) : v1::PutResult();
  }

  // Reads `key` through the client and compares every byte with what was put.
  void ExpectExact(const ChunkKey& key) {
    std::vector<std::byte> dest(kChunkBytes);
    auto got = client_->Get(key, dest);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(got->found) << key.ToHex();
    EXPECT_EQ(dest, PayloadFor(key, kChunkBytes)) << key.ToHex();
  }

  // The TierStats the Stats RPC reports for `tier`, or nullopt.
  std::optional<v1::TierStats> StatsOf(v1::Tier tier) {
    auto stats = client_->Stats();
    EXPECT_TRUE(stats.ok());
    for (const v1::TierStats& t : stats->tiers()) {
      if (t.tier() == tier) return t;
    }
    return std::nullopt;
  }

  std::shared_ptr<DeviceFaultKnobs> knobs_ = std::make_shared<DeviceFaultKnobs>();
};

TEST_F(GpuTierServiceTest, PutPreferringTheGpuLandsThereAndGetsReturnItsBytes) {
  StartWithGpu();
  grpc::Status status;
  const v1::PutResult raw = RawPut({0x9d, 1}, v1::TIER_GPU, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(raw.tier(), v1::TIER_GPU);
  EXPECT_EQ(RawPut({0x9d, 2}, v1::TIER_NONE, &status).tier(), v1::TIER_HOST);
  EXPECT_EQ(RawPut({0x9d, 3}, v1::TIER_NVME, &status).tier(), v1::TIER_NONE);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();

  // The client passes PutOptions.prefer_tier through.
  const ChunkKey key{0x9d, 4};
  PutOptions options;
  options.prefer_tier = v1::TIER_GPU;
  ASSERT_TRUE(client_->Put(key, TokensFor(key, 16), PayloadFor(key, kChunkBytes), options).ok());
  const auto gpu = StatsOf(v1::TIER_GPU);
  ASSERT_TRUE(gpu.has_value()) << "Stats lists the GPU tier";
  EXPECT_EQ(gpu->chunks(), 2u);
  EXPECT_EQ(gpu->capacity_bytes(), 1ull << 20);
  EXPECT_EQ(knobs_->to_device.load(), 2u);
  ExpectExact({0x9d, 1});
  ExpectExact(key);
}

TEST_F(GpuTierServiceTest, ChunksEvictedFromDramAreServedFromTheGpuAndScrapedAsTierGpu) {
  StartWithGpu();
  const ChunkKey key{0x9d, 7};
  PutOptions options;
  options.prefer_tier = v1::TIER_GPU;
  ASSERT_TRUE(client_->Put(key, TokensFor(key, 16), PayloadFor(key, kChunkBytes), options).ok());
  for (uint64_t i = 0; i < kHostChunks; ++i) {  // pushes the chunk's DRAM copy out
    const ChunkKey plain{0x9e, i};
    ASSERT_TRUE(client_->Put(plain, TokensFor(plain, 16), PayloadFor(plain, kChunkBytes)).ok());
  }
  auto lookup = client_->Lookup(std::vector<ChunkKey>{key});
  ASSERT_TRUE(lookup.ok());
  ASSERT_EQ(lookup->tiers.size(), 1u);
  EXPECT_EQ(lookup->tiers[0], v1::TIER_GPU);
  ExpectExact(key);

  const std::string text = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(HttpOk(text)) << text.substr(0, 200);
  EXPECT_EQ(Sample(text, "kvtier_tier_chunks{tier=\"gpu\"}"), 1);
  EXPECT_EQ(Sample(text, "kvtier_tier_bytes{tier=\"gpu\"}"), 5 * 4096);
  EXPECT_EQ(Sample(text, "kvtier_tier_capacity_bytes{tier=\"gpu\"}"), 1 << 20);
  EXPECT_EQ(Sample(text, "kvtier_tier_pinned_chunks{tier=\"gpu\"}"), 0);
  EXPECT_EQ(Sample(text, "kvtier_hits_total{tier=\"gpu\"}"), 1);
  EXPECT_EQ(Sample(text, "kvtier_evictions_total{tier=\"gpu\"}"), 0);
  EXPECT_EQ(Sample(text, "kvtier_promotions_total{tier=\"gpu\"}"), 1);
  EXPECT_EQ(Sample(text, "kvtier_demotions_total{tier=\"gpu\"}"), 0);
  EXPECT_EQ(Sample(text, "kvtier_gpu_copy_bytes_total{op=\"write\"}"), 64 + kChunkBytes);
  EXPECT_EQ(Sample(text, "kvtier_gpu_copy_bytes_total{op=\"read\"}"), 64 + kChunkBytes);
  EXPECT_EQ(Sample(text, "kvtier_gpu_copy_errors_total{op=\"read\"}"), 0);
  EXPECT_EQ(Sample(text, "kvtier_gpu_state{state=\"ok\"}"), 1);
  EXPECT_EQ(Sample(text, "kvtier_gpu_dropped_total"), 0);
  EXPECT_EQ(Sample(text, "kvtier_host_registered_bytes"), 0);  // the emulated device pins nothing
  EXPECT_EQ(text.find("tier=\"nvme\""), std::string::npos) << "no NVMe tier, no nvme series";
}

TEST_F(GpuTierServiceTest, CopyErrorsShowInMetricsAndTheChunkStaysInDram) {
  StartWithGpu();
  knobs_->fail_to_device = 1;
  grpc::Status status;
  EXPECT_EQ(RawPut({0x9d, 1}, v1::TIER_GPU, &status).tier(), v1::TIER_HOST);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ExpectExact({0x9d, 1});
  const std::string text = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_EQ(Sample(text, "kvtier_gpu_copy_errors_total{op=\"write\"}"), 1);
  EXPECT_EQ(Sample(text, "kvtier_tier_chunks{tier=\"gpu\"}"), 0);
}

TEST_F(GpuTierServiceTest, AServerAskedForAGpuTierWithoutAGpuStartsWithoutOne) {
  if (gpu::GpuAvailable()) GTEST_SKIP() << "this machine has a GPU";
  StartServer(1ull << 20, [](ServerConfig& c) { c.store.gpu.capacity_bytes = 1ull << 20; });
  ASSERT_NE(server_, nullptr);
  EXPECT_FALSE(StatsOf(v1::TIER_GPU).has_value());
  EXPECT_TRUE(StatsOf(v1::TIER_HOST).has_value());
  EXPECT_FALSE(server_->store().Stats().gpu.unavailable.empty());
  grpc::Status status;
  EXPECT_EQ(RawPut({0x9d, 1}, v1::TIER_GPU, &status).tier(), v1::TIER_HOST);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ExpectExact({0x9d, 1});
}

}  // namespace
}  // namespace kvtier::testing
