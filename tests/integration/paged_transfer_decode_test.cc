// Encoded chunks through PagedKvTransfer's CPU twin and a real server: int8 and cachegen chunks are decoded by
// the transfer (the decoders' twins, as the GPU would), over the shared arena and over gRPC, layer by layer and
// whole; what lands in the cache equals, byte for byte, what a plain Client::Get decodes on the host. Codecs the
// transfer does not decode, and device_decode = false, go through the host decoder. A corrupt container in the
// arena ends the placement and is dropped; a container whose stream the decoder refuses fails the call with the
// decoder's own message and places nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "container.h"  // codec/src: RecomputeChecksums, to reseal a damaged container
#include "integration/paged_transfer_fixture.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"
#include "kvtier/gpu/cachegen_decode.h"

namespace kvtier::testing {
namespace {

codec::KvShape KvShapeOf(const ModelFingerprint& fp, uint32_t tokens) {
  return {fp.num_layers, fp.num_kv_heads, fp.head_dim, tokens, fp.dtype};
}

// The chunk of `tokens` tokens at `position` of `cache`, packed.
std::vector<std::byte> Packed(const HostPagedCache& cache, uint32_t position, uint32_t tokens) {
  std::vector<std::byte> out(cache.shape.ChunkBytes(tokens));
  const gpu::SequenceSlice seq{cache.block_table.data(), static_cast<uint32_t>(cache.block_table.size()), position,
                               tokens};
  EXPECT_TRUE(gpu::PackPagedKvCpu(cache.View(), seq, out).ok());
  return out;
}

// Shared cachegen tables built from the cache's first chunks.
codec::ModelProfile ProfileOf(const HostPagedCache& cache, const ModelFingerprint& fp) {
  std::vector<std::vector<std::byte>> samples;
  std::vector<codec::KvView> views;
  for (uint32_t i = 0; i < 4; ++i) samples.push_back(Packed(cache, 16 * i, 16));
  for (const auto& s : samples) views.push_back({KvShapeOf(fp, 16), s, {}});
  auto profile = codec::ModelProfile::Build(views);
  EXPECT_TRUE(profile.ok()) << profile.status().ToString();
  return std::move(profile).value();
}

// Each placed chunk of `dest` equals the host decode of the stored chunk (Client::Get).
void ExpectHostDecode(Client& client, const HostPagedCache& dest, std::span<const ChunkKey> keys,
                      const std::vector<uint32_t>& sizes) {
  uint32_t position = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    std::vector<std::byte> decoded(dest.shape.ChunkBytes(sizes[i]));
    auto got = client.Get(keys[i], decoded);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(got->found);
    EXPECT_EQ(Packed(dest, position, sizes[i]), decoded) << "chunk " << i;
    position += sizes[i];
  }
}

// 64-token chunks: a cachegen chunk with inline tables (35 KB for this small model) must fit its slot.
TEST_F(PagedTransferSharedMemoryTest, Int8AndCachegenChunksAreDecodedByTheTransfer) {
  const ModelFingerprint fp = TestFingerprint(64);
  HostPagedCache source(CacheShape(fp), 41);
  source.FillRandom(42);
  const codec::ModelProfile profile = ProfileOf(source, fp);
  const std::vector<uint32_t> sizes{64, 50};
  codec::ThreadPoolExecutor pool(3);
  for (codec::CodecId id : {codec::CodecId::kInt8, codec::CodecId::kCacheGen}) {
    for (LocalPathMode mode : {LocalPathMode::kRequire, LocalPathMode::kOff}) {
      for (bool layerwise : {true, false}) {
        // Whole chunks: containers verified and parsed on the client's executor.
        SCOPED_TRACE(std::string(codec::CodecName(id)) + (mode == LocalPathMode::kOff ? " over gRPC" : " leased") +
                     (layerwise ? " layerwise" : " whole, on the executor"));
        codec::EncodeOptions encode;
        encode.codec = id;
        encode.profile = id == codec::CodecId::kCacheGen ? &profile : nullptr;
        encode.executor = layerwise ? nullptr : &pool;
        auto client = SharedClient(mode, encode, 64);
        if (id == codec::CodecId::kCacheGen) {
          ASSERT_TRUE(client->PutProfile("paged", profile).ok());
        }
        PagedTransferOptions o = HostOptions();
        o.layerwise = layerwise;
        auto t = PagedKvTransfer::Create(client.get(), CacheShape(fp), o);
        ASSERT_TRUE(t.ok()) << t.status().ToString();
        const std::vector<ChunkKey> keys = PutChunks(**t, source, 0, sizes);

        HostPagedCache dest(CacheShape(fp), 43);
        dest.Poison(0x5A);
        auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
        ASSERT_TRUE(load.ok()) << load.status().ToString();
        EXPECT_EQ(load->placed_tokens, 114u);
        for (const GetResult& r : load->results) EXPECT_EQ(r.codec, static_cast<uint8_t>(id));
        const PagedTransferStats stats = (*t)->stats();
        EXPECT_EQ(stats.decoded_chunks, 2u);
        EXPECT_EQ(stats.leased_chunks, mode == LocalPathMode::kRequire ? 2u : 0u);
        EXPECT_EQ(stats.staged_chunks, mode == LocalPathMode::kOff ? 2u : 0u);
        EXPECT_EQ(stats.resident_table_sets, id == codec::CodecId::kCacheGen ? 1u : 0u) << "the profile's tables";
        ExpectHostDecode(*client, dest, keys, sizes);
        const std::vector<std::byte> untouched(dest.shape.RowBytes(), std::byte{0x5A});
        EXPECT_EQ(std::memcmp(dest.Row(0, 1, 114), untouched.data(), untouched.size()), 0) << "nothing past the chunks";
        ASSERT_TRUE(client->Delete(keys).ok());
      }
    }
  }
}

TEST_F(PagedTransferSharedMemoryTest, OtherCodecsAndDeviceDecodeOffAreDecodedOnTheHost) {
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  HostPagedCache source(CacheShape(fp), 44);
  source.FillRandom(45);
  const std::vector<uint32_t> sizes{16, 7};
  for (codec::CodecId id : {codec::CodecId::kLossless, codec::CodecId::kInt8}) {
    SCOPED_TRACE(codec::CodecName(id));
    codec::EncodeOptions encode;
    encode.codec = id;
    auto client = SharedClient(LocalPathMode::kRequire, encode);
    PagedTransferOptions o = HostOptions();
    o.device_decode = id != codec::CodecId::kInt8;  // int8: the transfer could, but is told not to
    auto t = PagedKvTransfer::Create(client.get(), CacheShape(fp), o);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    const std::vector<ChunkKey> keys = PutChunks(**t, source, 0, sizes);
    HostPagedCache dest(CacheShape(fp), 46);
    auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
    ASSERT_TRUE(load.ok()) << load.status().ToString();
    EXPECT_EQ(load->placed_tokens, 23u);
    EXPECT_EQ((*t)->stats().decoded_chunks, 0u);
    EXPECT_EQ((*t)->stats().staged_chunks, 2u);
    for (const GetResult& r : load->results) EXPECT_EQ(r.codec, v1::CODEC_RAW) << "decoded by the client";
    ExpectHostDecode(*client, dest, keys, sizes);
    ASSERT_TRUE(client->Delete(keys).ok());
  }
}

// Verified on the client's executor (ACorruptChunkEndsThePlacementAndIsDropped covers one thread).
TEST_F(PagedTransferSharedMemoryTest, ACorruptEncodedChunkInTheArenaEndsThePlacementAndIsDropped) {
  codec::ThreadPoolExecutor pool(3);
  codec::EncodeOptions encode;
  encode.codec = codec::CodecId::kInt8;
  encode.executor = &pool;
  auto client = SharedClient(LocalPathMode::kRequire, encode);
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  auto t = PagedKvTransfer::Create(client.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok());
  HostPagedCache source(CacheShape(fp), 47);
  source.FillRandom(48);
  const std::vector<ChunkKey> keys = PutChunks(**t, source, 0, {16, 16, 16});
  // The stored container of chunk 1, as GetBatchEncoded hands it over; then one bit of it flipped in the arena.
  std::vector<std::byte> stored(CacheShape(fp).ChunkBytes(16));
  const std::span<std::byte> dests[1] = {stored};
  auto got = client->GetBatchEncoded(std::span(keys).subspan(1, 1), dests);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ((*got)[0].codec, v1::CODEC_INT8);
  stored.resize((*got)[0].bytes);
  FlipStoredBit(stored, stored.size() / 2, std::byte{0x10});

  HostPagedCache dest(CacheShape(fp), 49);
  dest.Poison(0x66);
  auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  ExpectCorruptSecondChunkDropped(*client, *load, keys);
  EXPECT_EQ((*t)->stats().leased_chunks, 1u) << "found by the transfer's own hash, not a staged get";
  ExpectHostDecode(*client, dest, std::span(keys).first(1), {16});
  const std::vector<std::byte> untouched(dest.shape.RowBytes(), std::byte{0x66});
  EXPECT_EQ(std::memcmp(dest.Row(0, 0, 16), untouched.data(), untouched.size()), 0);
}

// A cachegen container with a damaged data stream and resealed checksums: it parses, but a stream does not
// decode. Searched for deterministically; not every flip has that effect.
std::vector<std::byte> UndecodableCachegen(std::span<const std::byte> kv, const codec::KvShape& shape) {
  codec::EncodeOptions encode;
  encode.codec = codec::CodecId::kCacheGen;
  std::vector<std::byte> good;
  EXPECT_TRUE(codec::Encode({shape, kv, {}}, encode, good).ok());
  auto plan = gpu::ParseCachegenContainer(good);
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  const size_t body_at = static_cast<size_t>(plan->body.data() - good.data());
  std::mt19937 rng(50);
  std::vector<std::byte> raw(shape.RawBytes());
  for (int attempt = 0; attempt < 2000; ++attempt) {
    std::vector<std::byte> bad = good;
    bad[body_at + rng() % plan->body.size()] ^= std::byte(1u << (rng() % 8));
    codec::internal::RecomputeChecksums(bad);
    if (gpu::ParseCachegenContainer(bad).ok() && !codec::Decode(bad, raw, {}).ok()) return bad;
  }
  ADD_FAILURE() << "no damage found that parses and then fails to decode";
  return good;
}

// 64-token chunks, so that the container with its inline tables fits a slot and is decoded by the transfer.
// Staging of `slots` chunks: calls of more chunks run in rounds.
class PagedTransferRefusalTest : public PagedTransferTest {
 protected:
  void SetUp() override {
    PagedTransferTest::SetUp();
    fp_ = TestFingerprint(64);
    client_ = NewClient("test", fp_);
    source_ = std::make_unique<HostPagedCache>(Shape(), 51);
    source_->FillRandom(52);
    bad_ = UndecodableCachegen(Packed(*source_, 64, 64), KvShapeOf(fp_, 64));
    std::vector<std::byte> decoded(Shape().ChunkBytes(64));
    PutStoredCachegen(kBad, bad_);
    refused_ = client_->Get(kBad, decoded).status();
    ASSERT_FALSE(refused_.ok());
    for (uint32_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(client_->Put(kRaw[i], TokensFor(kRaw[i], 64), Packed(*source_, 64 * i, 64)).ok());
    }
    codec::EncodeOptions inline_tables;
    inline_tables.codec = codec::CodecId::kCacheGen;
    std::vector<std::byte> good;
    ASSERT_TRUE(codec::Encode({KvShapeOf(fp_, 64), Packed(*source_, 0, 64), {}}, inline_tables, good).ok());
    PutStoredCachegen(kGood, good);
  }
  // Room for four 64-token chunks.
  gpu::PagedKvShape Shape() const {
    gpu::PagedKvShape s = CacheShape(fp_);
    s.num_blocks = 32;
    return s;
  }
  // Puts `container` under `key` as stored cachegen bytes, as a client would never send them.
  void PutStoredCachegen(const ChunkKey& key, std::span<const std::byte> container) {
    v1::PutRequest header = PutHeaderFor(Context("test", fp_), key, container, TokensFor(key, 64));
    header.mutable_header()->set_codec(v1::CODEC_CACHEGEN);
    v1::PutResponse response;
    const grpc::Status put = PutRaw(header, container, &response);
    ASSERT_TRUE(put.ok()) << put.error_message();
  }
  std::unique_ptr<PagedKvTransfer> Transfer(uint32_t slots) {
    PagedTransferOptions o = HostOptions();
    o.staging_bytes = slots * Shape().ChunkBytes(64);
    auto t = PagedKvTransfer::Create(client_.get(), Shape(), o);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? std::move(t).value() : nullptr;
  }
  // The decoder's answer, as a host get gives it.
  void ExpectRefusal(const Status& s) {
    EXPECT_EQ(s.code(), refused_.code());
    EXPECT_EQ(s.message(), refused_.message());
    EXPECT_NE(s.message().find("cachegen stream"), std::string::npos) << s.ToString();
  }
  // Every row of `dest` from `from` on still holds the poison.
  static void ExpectUntouchedFrom(const HostPagedCache& dest, uint32_t from) {
    const std::vector<std::byte> poisoned(dest.shape.RowBytes(), std::byte{0x77});
    for (uint32_t l = 0; l < dest.shape.num_layers; ++l) {
      for (int kv = 0; kv < 2; ++kv) {
        for (uint32_t p = from; p < dest.shape.num_blocks * dest.shape.block_size; ++p) {
          ASSERT_EQ(std::memcmp(dest.Row(l, kv, p), poisoned.data(), poisoned.size()), 0)
              << "layer " << l << (kv ? " V" : " K") << " position " << p;
        }
      }
    }
  }
  static constexpr ChunkKey kBad{0xbad, 9};
  static constexpr ChunkKey kGood{0xbad, 8};  // chunk 0 of the source, cachegen with inline tables
  static constexpr ChunkKey kRaw[3] = {{0xbad, 1}, {0xbad, 2}, {0xbad, 3}};
  ModelFingerprint fp_;
  std::unique_ptr<HostPagedCache> source_;
  std::vector<std::byte> bad_;
  Status refused_;
};

TEST_F(PagedTransferRefusalTest, AnIntactCachegenChunkIsDecodedByTheTransfer) {
  auto t = Transfer(4);
  HostPagedCache dest(Shape(), 54);
  auto load = t->GetToDevice({&kGood, 1}, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_TRUE(load->error.ok());
  EXPECT_EQ(load->placed_tokens, 64u);
  ASSERT_EQ(t->stats().decoded_chunks, 1u);
  EXPECT_EQ(t->stats().resident_table_sets, 0u) << "inline tables travel with their chunk";
  ExpectHostDecode(*client_, dest, {&kGood, 1}, {64});
}

TEST_F(PagedTransferRefusalTest, AStreamTheDecoderRefusesStopsThePlacementBeforeItsChunk) {
  auto t = Transfer(4);
  HostPagedCache dest(Shape(), 53);
  dest.Poison(0x77);
  const std::vector<ChunkKey> keys{kGood, kRaw[1], kBad, kRaw[2]};  // one round: decoded, raw, refused, raw
  auto load = t->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 2u);
  EXPECT_EQ(load->placed_tokens, 128u);
  ExpectRefusal(load->error);
  EXPECT_EQ(t->stats().decoded_chunks, 1u);
  ExpectHostDecode(*client_, dest, std::span(keys).first(2), {64, 64});
  ExpectUntouchedFrom(dest, 128);
}

TEST_F(PagedTransferRefusalTest, ARefusalInALaterRoundKeepsTheEarlierRoundsPlaced) {
  auto t = Transfer(1);
  HostPagedCache dest(Shape(), 55);
  dest.Poison(0x77);
  const std::vector<ChunkKey> keys{kRaw[0], kRaw[1], kBad, kRaw[2]};  // one chunk per round
  auto load = t->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 2u);
  EXPECT_EQ(load->placed_tokens, 128u);
  ExpectRefusal(load->error);
  EXPECT_FALSE(load->results[3].found) << "the round after the refusal was never asked for";
  ExpectPlaced(*source_, dest, 0, 128, 0x77);  // and nothing from 128 on
}

TEST_F(PagedTransferRefusalTest, ARefusalBeforeAnythingWasPlacedIsTheCallsError) {
  for (uint32_t slots : {1u, 4u}) {
    auto t = Transfer(slots);
    HostPagedCache dest(Shape(), 56);
    dest.Poison(0x77);
    const std::vector<ChunkKey> keys{kBad, kRaw[1]};
    auto load = t->GetToDevice(keys, Target(dest, 0), nullptr);
    ASSERT_FALSE(load.ok()) << slots << " slots";
    ExpectRefusal(load.status());
    ExpectPlaced(*source_, dest, 0, 0, 0x77);
  }
}

}  // namespace
}  // namespace kvtier::testing
