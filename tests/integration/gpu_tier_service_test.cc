// The GPU tier through a real server: prefer_tier on the wire, PutResult.tier, reads served from the GPU
// copy byte-exact, Stats and Lookup naming TIER_GPU, and the tier="gpu" series on a real /metrics scrape;
// same-node clients told (for CUDA IPC) where a leased chunk's GPU copy lies, kept there by the lease.
// The device is the emulated one (tests/kvstore/emulated_device_memory.h), so this runs without a GPU; a
// server asked for a GPU tier on a machine without a GPU starts without one.
#include <unistd.h>

#include <cstring>
#include <filesystem>

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

// A same-node client asking for GPU copies learns the exported arena and, per leased hit with a GPU copy, the
// offset of its payload there (the emulated device's bytes at that offset are the payload). The lease keeps
// the copy in place while GPU puts evict everything else; after the release the copy can go.
TEST_F(GpuTierServiceTest, SameNodeClientsAreToldWhereTheGpuCopyIsAndTheLeaseKeepsItThere) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kvtier-gpu-ipc-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  StartServer(4ull << 20, [&](ServerConfig& c) {
    c.store.host_prefault = false;
    c.store.gpu.capacity_bytes = 1ull << 20;
    c.store.gpu.open_device = OpenEmulatedDevice(knobs_);
    c.store.shared_arena_bytes["workers"] = 4ull << 20;
    c.shared_memory.socket_path = (dir / "kvtier.sock").string();
  });
  ClientOptions o;
  o.endpoint = server_->address();
  o.name_space = "workers";
  o.fingerprint = TestFingerprint();
  o.local_path = LocalPathMode::kRequire;
  o.local_lease = std::chrono::seconds(60);  // outlives the 120 puts made under it, however slow the machine
  auto local = Client::Connect(o);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  const ChunkKey on_gpu{0x1bc, 1}, host_only{0x1bc, 2};
  PutOptions to_gpu;
  to_gpu.prefer_tier = v1::TIER_GPU;
  ASSERT_TRUE((*local)->Put(on_gpu, TokensFor(on_gpu, 16), PayloadFor(on_gpu, kChunkBytes), to_gpu).ok());
  ASSERT_TRUE((*local)->Put(host_only, TokensFor(host_only, 16), PayloadFor(host_only, kChunkBytes)).ok());
  uint64_t next_key = 100;
  auto fill_gpu = [&](int chunks) {  // GPU puts from another namespace: each needs room on the GPU
    for (int i = 0; i < chunks; ++i) {
      grpc::Status status;
      RawPut(ChunkKey{0xf111, next_key++}, v1::TIER_GPU, &status);
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
  };
  const ChunkKey keys[2] = {on_gpu, host_only};
  bool sunk = false;
  auto got = (*local)->GetLeased(keys, [&](const LeasedArena& arena, std::span<LeasedChunk> hits,
                                          std::vector<size_t>*) -> Status {
    sunk = true;
    EXPECT_EQ(arena.gpu_ipc_handle.size(), 64u);
    EXPECT_EQ(arena.gpu_ipc_handle.rfind("emulated IPC handle of device 0", 0), 0u);
    EXPECT_EQ(arena.gpu_pci_bus_id, "emulated:0");
    EXPECT_EQ(arena.gpu_arena_bytes, 1ull << 20);
    EXPECT_EQ(hits.size(), 2u);
    if (hits.size() != 2) return Status::Ok();
    EXPECT_FALSE(hits[1].gpu_offset.has_value()) << "no GPU copy";
    EXPECT_TRUE(hits[0].gpu_offset.has_value());
    if (!hits[0].gpu_offset) return Status::Ok();
    const std::byte* device = knobs_->memory.load() + *hits[0].gpu_offset;
    const auto want = PayloadFor(on_gpu, kChunkBytes);
    EXPECT_EQ(std::memcmp(device, want.data(), want.size()), 0) << "the GPU copy's payload is at gpu_offset";
    fill_gpu(120);  // two GPU tiers' worth: every unheld copy is evicted at least once
    EXPECT_EQ(std::memcmp(device, want.data(), want.size()), 0) << "the lease kept the GPU copy in place";
    return Status::Ok();
  }, /*want_gpu=*/true);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(*got) << (*local)->local_fallback_reason();
  EXPECT_TRUE(sunk);

  // Released: the copy is evictable again, and a get without want_gpu is told nothing of GPUs.
  fill_gpu(120);
  auto again = (*local)->GetLeased(keys, [&](const LeasedArena&, std::span<LeasedChunk> hits,
                                            std::vector<size_t>*) -> Status {
    for (const LeasedChunk& h : hits) EXPECT_FALSE(h.gpu_offset.has_value()) << h.index;
    return Status::Ok();
  }, /*want_gpu=*/true);
  ASSERT_TRUE(again.ok() && *again);
  EXPECT_TRUE((**again)[0].found) << "still in DRAM";
  ASSERT_TRUE((*local)->Put(ChunkKey{0x1bc, 3}, TokensFor(ChunkKey{0x1bc, 3}, 16),
                            PayloadFor(ChunkKey{0x1bc, 3}, kChunkBytes), to_gpu).ok());
  const ChunkKey fresh[1] = {ChunkKey{0x1bc, 3}};
  auto plain = (*local)->GetLeased(fresh, [&](const LeasedArena& arena, std::span<LeasedChunk> hits,
                                             std::vector<size_t>*) -> Status {
    EXPECT_EQ(hits.size(), 1u);
    for (const LeasedChunk& h : hits) EXPECT_FALSE(h.gpu_offset.has_value()) << "not asked for";
    EXPECT_FALSE(arena.gpu_ipc_handle.empty()) << "the hello names the arena all the same";
    return Status::Ok();
  });
  ASSERT_TRUE(plain.ok() && *plain);
  local->reset();
  server_.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier::testing
