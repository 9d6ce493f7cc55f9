// PagedKvTransfer on the GPU against its CPU twin, through a real server (label gpu; skips without a GPU):
// the same chunks put from a device cache and fetched into another, with the device caches poisoned first and
// every byte compared with what the twin produced in host memory; layer events waited on from another stream;
// and on the server's host, chunks DMA'd straight from its shared arena (registered read-only with the GPU);
// int8 and cachegen chunks decoded by the kernels; chunks copied out of another process's GPU tier by CUDA IPC,
// or received from it over NCCL (two GPUs), or over gRPC when NCCL cannot form.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <iostream>
#include <fstream>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "integration/paged_cache.h"
#include "integration/server_process.h"
#include "integration/test_server.h"
#include "kvtier/client/paged_transfer.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/nccl_channel.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::testing {
namespace {

// A device copy of a HostPagedCache: one DeviceBuffer per layer and side, and the block table.
struct DevicePagedCache {
  std::vector<gpu::DeviceBuffer> k, v;
  std::vector<void*> k_ptrs, v_ptrs;
  std::optional<gpu::DeviceBuffer> table;  // DeviceBuffer has no empty state
  gpu::PagedKvShape shape;

  static DevicePagedCache Upload(const HostPagedCache& host) {
    DevicePagedCache d;
    d.shape = host.shape;
    for (uint32_t l = 0; l < host.shape.num_layers; ++l) {
      for (auto [src, dst, ptrs] : {std::tuple{&host.k[l], &d.k, &d.k_ptrs}, std::tuple{&host.v[l], &d.v, &d.v_ptrs}}) {
        auto buf = gpu::DeviceBuffer::Allocate(src->size());
        EXPECT_TRUE(buf.ok());
        EXPECT_TRUE(buf->CopyFromHost(*src).ok());
        ptrs->push_back(buf->data());
        dst->push_back(std::move(*buf));
      }
    }
    auto table = gpu::DeviceBuffer::Allocate(host.block_table.size() * sizeof(int32_t));
    EXPECT_TRUE(table.ok());
    EXPECT_TRUE(table->CopyFromHost(std::as_bytes(std::span(host.block_table))).ok());
    d.table.emplace(std::move(*table));
    return d;
  }
  void Download(HostPagedCache& host) const {
    for (uint32_t l = 0; l < shape.num_layers; ++l) {
      ASSERT_TRUE(k[l].CopyToHost(host.k[l]).ok());
      ASSERT_TRUE(v[l].CopyToHost(host.v[l]).ok());
    }
  }
  PagedTarget Target(uint32_t first_token) const {
    return PagedTarget{{shape, k_ptrs, v_ptrs}, reinterpret_cast<const int32_t*>(table->data()),
                       static_cast<uint32_t>(table->size() / sizeof(int32_t)), first_token};
  }
};

class PagedTransferGpuTest : public ServerFixture {
 protected:
  void SetUp() override {
    if (!gpu::GpuAvailable()) GTEST_SKIP() << "no GPU: " << gpu::CachedProbe().reason;
    StartServer(256ull << 20);
  }
  // All `chunks` straight from the shared arena, where this GPU can map host memory read-only (as workers map
  // the arena); else none, and the transfer says why it staged them instead.
  static void ExpectLeasedWherePossible(const PagedTransferStats& stats, uint64_t chunks) {
    if (gpu::CachedProbe().devices.front().host_register_read_only) {
      EXPECT_EQ(stats.leased_chunks, chunks) << "zero copy turned off: " << stats.zero_copy_off;
      return;
    }
    EXPECT_EQ(stats.leased_chunks, 0u);
    EXPECT_NE(stats.zero_copy_off.find("cudaHostRegister"), std::string::npos) << stats.zero_copy_off;
  }
  // Restarts the server with a 64 MiB shared arena for namespace "workers" and its socket in `dir`.
  void StartSharedServer(const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    server_.reset();
    StartServer(64ull << 20, [&](ServerConfig& c) {
      c.store.shared_arena_bytes["workers"] = 64ull << 20;
      c.shared_memory.socket_path = (dir / "kvtier.sock").string();
      c.shared_memory.put_window_bytes = 4ull << 20;
    });
  }
};

gpu::PagedKvShape Shape(const ModelFingerprint& fp) {
  return gpu::PagedKvShape{fp.num_layers, 64, 16, fp.num_kv_heads, fp.head_dim, fp.dtype};
}

// Puts from a device cache and reads back into a poisoned device cache (at `get_at`), and the same through
// the twin; both destination caches must be byte-identical.
// Returns the device transfer's stats.
PagedTransferStats RoundTrip(Client* client, const ModelFingerprint& fp, const PagedTransferOptions& options,
                             uint32_t put_at, uint32_t get_at, const std::vector<uint32_t>& sizes, uint32_t seed,
                             const PutOptions& put_options = {}) {
  HostPagedCache source(Shape(fp), seed);
  source.FillRandom(seed + 1);
  std::vector<ChunkKey> keys;
  std::vector<std::vector<uint32_t>> tokens;
  for (size_t i = 0; i < sizes.size(); ++i) {
    keys.push_back(ChunkKey{seed, 1000 + i});
    tokens.push_back(TokensFor(keys.back(), sizes[i]));
  }
  const std::vector<std::span<const uint32_t>> token_spans(tokens.begin(), tokens.end());

  auto device = PagedKvTransfer::Create(client, Shape(fp), options);
  EXPECT_TRUE(device.ok()) << device.status().ToString();
  if (!device.ok()) return {};
  [&] {
  auto stream = gpu::Stream::Create();
  ASSERT_TRUE(stream.ok());
  DevicePagedCache dsource = DevicePagedCache::Upload(source);
  auto put = (*device)->PutFromDevice(keys, token_spans, dsource.Target(put_at), stream->get(), put_options);
  ASSERT_TRUE(put.ok()) << put.status().ToString();

  HostPagedCache dest(Shape(fp), seed + 2);
  dest.Poison(0xFF);
  DevicePagedCache ddest = DevicePagedCache::Upload(dest);
  auto load = (*device)->GetToDevice(keys, ddest.Target(get_at), stream->get());
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  // Another stream waits for each layer, as a worker's compute stream would.
  auto compute = gpu::Stream::Create();
  ASSERT_TRUE(compute.ok());
  for (uint32_t l = 0; l < fp.num_layers; ++l) ASSERT_TRUE(load->WaitLayer(l, compute->get()).ok());
  ASSERT_TRUE(compute->Synchronize().ok());
  ASSERT_TRUE(load->Synchronize().ok());
  HostPagedCache from_device = dest;
  ddest.Download(from_device);

  PagedTransferOptions twin_options = options;
  twin_options.placement = TransferPlacement::kHost;
  auto twin = PagedKvTransfer::Create(client, Shape(fp), twin_options);
  ASSERT_TRUE(twin.ok());
  HostPagedCache twin_dest(Shape(fp), seed + 2);
  twin_dest.Poison(0xFF);
  auto twin_load = (*twin)->GetToDevice(keys, PagedTarget{twin_dest.View(), twin_dest.block_table.data(),
                                                          static_cast<uint32_t>(twin_dest.block_table.size()), get_at},
                                        nullptr);
  ASSERT_TRUE(twin_load.ok());
  EXPECT_EQ(load->placed_tokens, twin_load->placed_tokens);
  for (uint32_t l = 0; l < fp.num_layers; ++l) {
    EXPECT_EQ(from_device.k[l], twin_dest.k[l]) << "layer " << l << " K";
    EXPECT_EQ(from_device.v[l], twin_dest.v[l]) << "layer " << l << " V";
  }
  }();
  return (*device)->stats();
}

TEST_F(PagedTransferGpuTest, LayerwiseLoadEqualsTheTwin) {
  PagedTransferOptions o;
  RoundTrip(client_.get(), TestFingerprint(16), o, 5, 5, {16, 16, 16, 3}, 1);
}

TEST_F(PagedTransferGpuTest, RoundsAndWholeChunkUnpackEqualTheTwin) {
  PagedTransferOptions o;
  o.staging_bytes = Shape(TestFingerprint(16)).ChunkBytes(16) * 2;
  o.layerwise = false;
  RoundTrip(client_.get(), TestFingerprint(16), o, 0, 0, {16, 16, 16, 16, 16, 7}, 2);
}

TEST_F(PagedTransferGpuTest, ReRotationEqualsTheTwin) {
  ModelFingerprint fp = TestFingerprint(16);
  fp.keys_post_rope = true;
  auto client = NewClient("test", fp);
  RoundTrip(client.get(), fp, PagedTransferOptions{}, 0, 37, {16, 16, 9}, 3);
}

TEST_F(PagedTransferGpuTest, SharedArenaChunksAreDmaedStraightToTheGpu) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("kvtier-gpu-" + std::to_string(getpid()));
  StartSharedServer(dir);
  ClientOptions o;
  o.endpoint = server_->address();
  o.name_space = "workers";
  o.fingerprint = TestFingerprint(16);
  o.local_path = LocalPathMode::kRequire;
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok());
  const PagedTransferStats stats = RoundTrip(client->get(), o.fingerprint, PagedTransferOptions{}, 3, 3, {16, 16, 5}, 4);
  EXPECT_EQ(stats.leased_chunks + stats.staged_chunks, 3u);
  ExpectLeasedWherePossible(stats, 3);
  client->reset();
  server_.reset();
  std::filesystem::remove_all(dir);
}

// A server in another process with a GPU tier on this GPU: chunks put with prefer_tier GPU are copied
// device-to-device out of its arena, opened by CUDA IPC (a process cannot open its own handles, hence the
// second process), and land byte for byte as the twin places them from DRAM.
TEST_F(PagedTransferGpuTest, ChunksInAnotherProcessGpuTierAreCopiedByCudaIpc) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("kvtier-ipc-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::filesystem::path config = dir / "kvtier.yaml";
  {
    std::ofstream out(config);
    out << "listen: 127.0.0.1:0\nmetrics_listen: \"\"\n"
        << "host_tier:\n  capacity: 64MiB\n  prefault: false\n  huge_pages: false\n"
        << "gpu_tier:\n  capacity: 64MiB\n"
        << "shared_memory:\n  socket: " << (dir / "kvtier.sock").string() << "\n  namespaces: {workers: 64MiB}\n";
  }
  {
    ServerProcess server(dir, config);
    ClientOptions o;
    o.endpoint = server.address();
    o.name_space = "workers";
    o.fingerprint = TestFingerprint(16);
    o.local_path = LocalPathMode::kRequire;
    auto client = Client::Connect(o);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    PutOptions to_gpu;
    to_gpu.prefer_tier = v1::TIER_GPU;
    const PagedTransferStats stats =
        RoundTrip(client->get(), o.fingerprint, PagedTransferOptions{}, 0, 0, {16, 16, 7}, 6, to_gpu);
    EXPECT_EQ(stats.ipc_chunks, 3u) << "ipc off: " << stats.ipc_off << "; zero copy off: " << stats.zero_copy_off;
    EXPECT_EQ(stats.leased_chunks, 3u);
  }
  std::filesystem::remove_all(dir);
}

// A `kvtier serve` in another process with a GPU tier on `device`, reached over gRPC only (another node, as far
// as the transfer can tell); `sizes` put from a device cache with GPU copies and read back. Returns the stats.
PagedTransferStats RoundTripFromAnotherGpuTier(int device, uint32_t seed) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kvtier-nccl-" + std::to_string(getpid()) + "-" + std::to_string(seed));
  std::filesystem::create_directories(dir);
  const std::filesystem::path config = dir / "kvtier.yaml";
  {
    std::ofstream out(config);
    out << "listen: 127.0.0.1:0\nmetrics_listen: \"\"\n"
        << "host_tier:\n  capacity: 64MiB\n  prefault: false\n  huge_pages: false\n"
        << "gpu_tier:\n  capacity: 64MiB\n  device: " << device << "\n  link_timeout_ms: 20000\n";
  }
  PagedTransferStats stats;
  {
    ServerProcess server(dir, config);
    ClientOptions o;
    o.endpoint = server.address();
    o.name_space = "workers";
    o.fingerprint = TestFingerprint(16);
    o.local_path = LocalPathMode::kOff;
    auto client = Client::Connect(o);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    if (!client.ok()) return stats;
    PutOptions to_gpu;
    to_gpu.prefer_tier = v1::TIER_GPU;
    stats = RoundTrip(client->get(), o.fingerprint, PagedTransferOptions{}, 0, 0, {16, 16, 7}, seed, to_gpu);
  }
  std::filesystem::remove_all(dir);
  return stats;
}

// Two GPUs: the server's GPU tier on device 1, the worker on device 0; the chunks come over NCCL.
TEST_F(PagedTransferGpuTest, ChunksOnAnotherGpusTierComeOverNccl) {
  if (gpu::CachedProbe().devices.size() < 2) GTEST_SKIP() << "needs two GPUs (NCCL puts each rank on its own)";
  if (auto v = gpu::NcclVersion(); !v.ok()) GTEST_SKIP() << "no NCCL: " << v.status().ToString();
  const PagedTransferStats stats = RoundTripFromAnotherGpuTier(1, 300);
  EXPECT_EQ(stats.nccl_chunks, 3u) << "nccl off: " << stats.nccl_off;
  EXPECT_EQ(stats.staged_chunks, 0u);
}

// One GPU for both: NCCL refuses two ranks on one device (or is not installed); the channel is turned off and
// every chunk comes over gRPC, byte-exact.
TEST_F(PagedTransferGpuTest, ANcclChannelThatCannotFormFallsBackToGrpc) {
  const PagedTransferStats stats = RoundTripFromAnotherGpuTier(0, 310);
  EXPECT_EQ(stats.nccl_chunks, 0u);
  EXPECT_EQ(stats.staged_chunks, 3u);
  EXPECT_NE(stats.nccl_off, "");
  std::cout << "[ nccl_off ] " << stats.nccl_off << "\n";
}

// int8 and cachegen chunks decoded by the kernels equal the twin's decode (itself equal to codec::Decode), over
// gRPC and straight from the shared arena, layer by layer and whole; cachegen with inline tables and with a
// shared profile's tables resident on the device. 64-token chunks: inline tables fit a chunk's slot.
TEST_F(PagedTransferGpuTest, EncodedChunksDecodedOnTheGpuEqualTheTwin) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kvtier-gpu-decode-" + std::to_string(getpid()));
  StartSharedServer(dir);
  const ModelFingerprint fp = TestFingerprint(64);
  HostPagedCache samples(Shape(fp), 90);
  samples.FillRandom(91);
  std::vector<std::vector<std::byte>> packed;
  std::vector<codec::KvView> views;
  for (uint32_t i = 0; i < 2; ++i) {
    packed.emplace_back(Shape(fp).ChunkBytes(64));
    const gpu::SequenceSlice seq{samples.block_table.data(), static_cast<uint32_t>(samples.block_table.size()),
                                 64 * i, 64};
    ASSERT_TRUE(gpu::PackPagedKvCpu(samples.View(), seq, packed.back()).ok());
    views.push_back({{fp.num_layers, fp.num_kv_heads, fp.head_dim, 64, fp.dtype}, packed.back(), {}});
  }
  auto profile = codec::ModelProfile::Build(views);
  ASSERT_TRUE(profile.ok()) << profile.status().ToString();
  uint32_t seed = 10;
  for (int variant = 0; variant < 3; ++variant) {  // int8, cachegen inline, cachegen with the profile
    const codec::CodecId id = variant == 0 ? codec::CodecId::kInt8 : codec::CodecId::kCacheGen;
    for (LocalPathMode mode : {LocalPathMode::kRequire, LocalPathMode::kOff}) {
      for (bool layerwise : {true, false}) {
        SCOPED_TRACE(std::string(codec::CodecName(id)) + (variant == 2 ? " (profile)" : "") +
                     (mode == LocalPathMode::kOff ? " over gRPC" : " leased") + (layerwise ? " layerwise" : " whole"));
        ClientOptions o;
        o.endpoint = server_->address();
        o.name_space = "workers";
        o.fingerprint = fp;
        o.local_path = mode;
        o.encode.codec = id;
        o.encode.profile = variant == 2 ? &*profile : nullptr;
        auto client = Client::Connect(o);
        ASSERT_TRUE(client.ok());
        if (variant == 2) {
          ASSERT_TRUE((*client)->PutProfile("gpu-test", *profile).ok());
        }
        PagedTransferOptions options;
        options.layerwise = layerwise;
        const PagedTransferStats stats =
            RoundTrip(client->get(), o.fingerprint, options, 0, 0, {64, 64, 21}, seed += 10);
        EXPECT_EQ(stats.decoded_chunks, 3u);
        if (mode == LocalPathMode::kRequire) {
          ExpectLeasedWherePossible(stats, 3);
        } else {
          EXPECT_EQ(stats.leased_chunks, 0u);
        }
        EXPECT_EQ(stats.resident_table_sets, variant == 2 ? 1u : 0u);
      }
    }
  }
  server_.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier::testing
