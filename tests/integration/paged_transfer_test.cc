// PagedKvTransfer's CPU twin through a real server: chunks packed out of one paged cache, stored, fetched and
// unpacked into another, compared byte for byte; re-rotation on the way in; misses; rounds; bad arguments; and
// on the server's host, chunks copied straight out of its shared arena (a corrupt one stops the placement).
// Encoded chunks: paged_transfer_decode_test.cc.
// The GPU placement runs the same control flow with kernels (paged_transfer_gpu_test.cc, label gpu).
#include "kvtier/client/paged_transfer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "integration/paged_transfer_fixture.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/rope.h"

namespace kvtier::testing {
namespace {

TEST_F(PagedTransferTest, PutThenGetMovesEveryRowAndNothingElse) {
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  HostPagedCache source(CacheShape(fp), 1);
  source.FillRandom(2);
  const std::vector<ChunkKey> keys = PutChunks(**t, source, 3, {16, 16, 5});

  HostPagedCache dest(CacheShape(fp), 7);  // another block order
  dest.Poison(0xEE);
  auto load = (*t)->GetToDevice(keys, Target(dest, 3), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 3u);
  EXPECT_EQ(load->placed_tokens, 37u);
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_TRUE(load->results[i].found);
    EXPECT_EQ(load->results[i].base_position, 3 + 16 * i) << "PutFromDevice stores where each chunk sat";
  }
  for (uint32_t l = 0; l < fp.num_layers; ++l) EXPECT_TRUE(load->WaitLayer(l, nullptr).ok());
  EXPECT_TRUE(load->Synchronize().ok());
  ExpectPlaced(source, dest, 3, 40, 0xEE);

  // The stored chunk is exactly the packed rows (what a plain Get returns).
  std::vector<std::byte> chunk(CacheShape(fp).ChunkBytes(16));
  std::vector<std::byte> packed(chunk.size());
  ASSERT_TRUE(client_->Get(keys[1], chunk).ok());
  ASSERT_TRUE(gpu::PackPagedKvCpu(source.View(), {source.block_table.data(), 16, 19, 16}, packed).ok());
  EXPECT_EQ(chunk, packed);
}

TEST_F(PagedTransferTest, RoundsAndWholeChunkUnpackGiveTheSameCache) {
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  PagedTransferOptions one_chunk = HostOptions();
  one_chunk.staging_bytes = CacheShape(fp).ChunkBytes(kChunkTokens);  // one chunk per round
  one_chunk.layerwise = false;
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), one_chunk);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  HostPagedCache source(CacheShape(fp), 3);
  source.FillRandom(4);
  const std::vector<ChunkKey> keys = PutChunks(**t, source, 0, {16, 16, 16, 16, 9});
  HostPagedCache dest(CacheShape(fp), 5);
  dest.Poison(0x11);
  auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 5u);
  ExpectPlaced(source, dest, 0, 73, 0x11);
}

TEST_F(PagedTransferTest, StopsAtTheFirstMiss) {
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok());
  HostPagedCache source(CacheShape(fp), 8);
  source.FillRandom(9);
  std::vector<ChunkKey> keys = PutChunks(**t, source, 0, {16, 16, 16});
  keys[1] = ChunkKey{0xdead, 0xbeef};  // never stored
  HostPagedCache dest(CacheShape(fp), 10);
  dest.Poison(0x22);
  auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 1u);
  EXPECT_EQ(load->placed_tokens, 16u);
  EXPECT_FALSE(load->results[1].found);
  EXPECT_TRUE(load->results[2].found) << "results say what the server had, even past the miss";
  ExpectPlaced(source, dest, 0, 16, 0x22);
}

TEST_F(PagedTransferTest, KeysStoredAfterRopeAreReRotatedToWhereTheyLand) {
  ModelFingerprint fp = TestFingerprint(kChunkTokens);
  fp.keys_post_rope = true;
  client_ = NewClient("test", fp);
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok());
  HostPagedCache source(CacheShape(fp), 11);
  source.FillRandom(12);
  const std::vector<ChunkKey> keys = PutChunks(**t, source, 0, {16});

  const gpu::SequenceSlice at0{source.block_table.data(), 16, 0, 16};
  std::vector<std::byte> expected(CacheShape(fp).ChunkBytes(16));
  ASSERT_TRUE(gpu::PackPagedKvCpu(source.View(), at0, expected).ok());
  const gpu::ChunkShape chunk_shape{fp.num_layers, 16, fp.num_kv_heads, fp.head_dim, fp.dtype};
  ASSERT_TRUE(gpu::RerotateChunkKeysCpu(chunk_shape, gpu::RopeParams::FromFingerprint(fp), 21, expected).ok());

  HostPagedCache dest(CacheShape(fp), 13);
  auto load = (*t)->GetToDevice(keys, Target(dest, 21), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  std::vector<std::byte> got(expected.size());
  ASSERT_TRUE(gpu::PackPagedKvCpu(dest.View(), {dest.block_table.data(), 16, 21, 16}, got).ok());
  EXPECT_EQ(got, expected) << "K rotated by +21 positions, V as stored";

  PagedTransferOptions keep = HostOptions();
  keep.rerotate = false;
  auto plain = PagedKvTransfer::Create(client_.get(), CacheShape(fp), keep);
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE((*plain)->GetToDevice(keys, Target(dest, 21), nullptr).ok());
  std::vector<std::byte> original(expected.size());
  ASSERT_TRUE(gpu::PackPagedKvCpu(source.View(), at0, original).ok());
  ASSERT_TRUE(gpu::PackPagedKvCpu(dest.View(), {dest.block_table.data(), 16, 21, 16}, got).ok());
  EXPECT_EQ(got, original) << "rerotate = false places the keys as stored";
}

TEST_F(PagedTransferTest, BadArgumentsAreRefusedWithTheReason) {
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  gpu::PagedKvShape wrong = CacheShape(fp);
  wrong.head_dim = 32;
  auto mismatch = PagedKvTransfer::Create(client_.get(), wrong, HostOptions());
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.status().message().find("does not match the client's fingerprint"), std::string::npos)
      << mismatch.status().ToString();

  PagedTransferOptions tiny = HostOptions();
  tiny.staging_bytes = 1000;
  auto small = PagedKvTransfer::Create(client_.get(), CacheShape(fp), tiny);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("below one chunk"), std::string::npos) << small.status().ToString();

  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok());
  HostPagedCache cache(CacheShape(fp), 14);
  cache.FillRandom(15);
  const std::vector<uint32_t> ids = TokensFor(ChunkKey{1, 2}, 16);
  const std::vector<std::span<const uint32_t>> one{ids};
  const std::vector<ChunkKey> two_keys{ChunkKey{1, 2}, ChunkKey{1, 3}};
  auto count = (*t)->PutFromDevice(two_keys, one, Target(cache, 0), nullptr);
  ASSERT_FALSE(count.ok());
  EXPECT_EQ(count.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(count.status().message().find("2 keys but 1 token id lists"), std::string::npos);

  // 128 positions in the table: a chunk at 120 runs past it. Nothing is stored.
  auto beyond = (*t)->PutFromDevice(std::span(two_keys).first(1), one, Target(cache, 120), nullptr);
  ASSERT_FALSE(beyond.ok());
  EXPECT_NE(beyond.status().message().find("block table covers 128 positions"), std::string::npos)
      << beyond.status().ToString();
  auto exists = client_->Exists(std::span(two_keys).first(1));
  ASSERT_TRUE(exists.ok());
  EXPECT_FALSE((*exists)[0]);

  ASSERT_TRUE((*t)->PutFromDevice(std::span(two_keys).first(1), one, Target(cache, 0), nullptr).ok());
  auto late = (*t)->GetToDevice(std::span(two_keys).first(1), Target(cache, 120), nullptr);
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.status().message().find("chunks reach position 136"), std::string::npos) << late.status().ToString();

  auto load = (*t)->GetToDevice(std::span(two_keys).first(1), Target(cache, 0), nullptr);
  ASSERT_TRUE(load.ok());
  const Status bad_layer = load->WaitLayer(fp.num_layers, nullptr);
  EXPECT_EQ(bad_layer.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_layer.message().find("layer 2 of a cache with 2 layers"), std::string::npos);
}

TEST_F(PagedTransferTest, DevicePlacementWithoutAGpuIsUnavailable) {
  if (gpu::GpuAvailable()) GTEST_SKIP() << "a GPU is present: paged_transfer_gpu_test covers the device placement";
  PagedTransferOptions o = HostOptions();
  o.placement = TransferPlacement::kDevice;
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(TestFingerprint(kChunkTokens)), o);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnavailable);
#if defined(KVTIER_HAVE_CUDA)
  EXPECT_EQ(t.status().message(), "no usable GPU: " + gpu::CachedProbe().reason);
#else
  EXPECT_EQ(t.status().message(), "kvtier was built without CUDA");
#endif
}

TEST_F(PagedTransferSharedMemoryTest, RawChunksAreCopiedStraightFromTheSharedArena) {
  auto client = SharedClient(LocalPathMode::kRequire);
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  auto t = PagedKvTransfer::Create(client.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  HostPagedCache source(CacheShape(fp), 21);
  source.FillRandom(22);
  const std::vector<ChunkKey> keys = PutChunks(**t, source, 2, {16, 16, 11});
  HostPagedCache dest(CacheShape(fp), 23);
  dest.Poison(0x33);
  auto load = (*t)->GetToDevice(keys, Target(dest, 2), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 3u);
  ExpectPlaced(source, dest, 2, 45, 0x33);
  EXPECT_EQ((*t)->stats().leased_chunks, 3u);
  EXPECT_EQ((*t)->stats().staged_chunks, 0u);
  EXPECT_EQ(client->local_stats().fallbacks, 0u) << client->local_fallback_reason();
}

// Hashed on the calling thread, then on the client's executor (ClientOptions::encode.executor).
TEST_F(PagedTransferSharedMemoryTest, ACorruptChunkEndsThePlacementAndIsDropped) {
  codec::ThreadPoolExecutor pool(3);
  uint64_t failures = 0;
  for (codec::Executor* executor : {static_cast<codec::Executor*>(nullptr), static_cast<codec::Executor*>(&pool)}) {
    SCOPED_TRACE(executor == nullptr ? "one thread" : "on the executor");
    codec::EncodeOptions encode;
    encode.executor = executor;
    auto client = SharedClient(LocalPathMode::kRequire, encode);
    const ModelFingerprint fp = TestFingerprint(kChunkTokens);
    auto t = PagedKvTransfer::Create(client.get(), CacheShape(fp), HostOptions());
    ASSERT_TRUE(t.ok());
    HostPagedCache source(CacheShape(fp), 24);
    source.FillRandom(25);
    const std::vector<ChunkKey> keys = PutChunks(**t, source, 0, {16, 16, 16});
    // Flip one bit of chunk 1 in the server's memory, as failing DRAM would: find it by its bytes.
    std::vector<std::byte> stored(CacheShape(fp).ChunkBytes(16));
    ASSERT_TRUE(gpu::PackPagedKvCpu(source.View(), {source.block_table.data(), 16, 16, 16}, stored).ok());
    FlipStoredBit(stored, 777, std::byte{0x04});

    HostPagedCache dest(CacheShape(fp), 26);
    dest.Poison(0x44);
    auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
    ASSERT_TRUE(load.ok()) << load.status().ToString();
    ExpectCorruptSecondChunkDropped(*client, *load, keys, ++failures);
    for (uint32_t l = 0; l < fp.num_layers; ++l) {
      for (uint32_t p = 0; p < 16; ++p) {
        ASSERT_EQ(std::memcmp(dest.Row(l, 0, p), source.Row(l, 0, p), dest.shape.RowBytes()), 0);
      }
    }
  }
}

}  // namespace
}  // namespace kvtier::testing
