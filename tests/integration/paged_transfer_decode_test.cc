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
  for (codec::CodecId id : {codec::CodecId::kInt8, codec::CodecId::kCacheGen}) {
    for (LocalPathMode mode : {LocalPathMode::kRequire, LocalPathMode::kOff}) {
      for (bool layerwise : {true, false}) {
        SCOPED_TRACE(std::string(codec::CodecName(id)) + (mode == LocalPathMode::kOff ? " over gRPC" : " leased") +
                     (layerwise ? " layerwise" : " whole"));
        codec::EncodeOptions encode;
        encode.codec = id;
        encode.profile = id == codec::CodecId::kCacheGen ? &profile : nullptr;
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

TEST_F(PagedTransferSharedMemoryTest, ACorruptEncodedChunkInTheArenaEndsThePlacementAndIsDropped) {
  codec::EncodeOptions encode;
  encode.codec = codec::CodecId::kInt8;
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
TEST_F(PagedTransferTest, AStreamTheDecoderRefusesFailsTheCallWithItsMessageAndPlacesNothing) {
  const ModelFingerprint fp = TestFingerprint(64);
  client_ = NewClient("test", fp);
  HostPagedCache source(CacheShape(fp), 51);
  source.FillRandom(52);
  const std::vector<std::byte> bad = UndecodableCachegen(Packed(source, 64, 64), KvShapeOf(fp, 64));
  // Chunk 0 raw, chunk 1 the damaged container, stored as a client would never send it.
  const std::vector<ChunkKey> keys{ChunkKey{0xbad, 1}, ChunkKey{0xbad, 2}};
  ASSERT_TRUE(client_->Put(keys[0], TokensFor(keys[0], 64), Packed(source, 0, 64)).ok());
  auto put_raw = [&](const ChunkKey& key, std::span<const std::byte> container) {
    v1::PutRequest header = PutHeaderFor(Context("test", fp), key, container, TokensFor(key, 64));
    header.mutable_header()->set_codec(v1::CODEC_CACHEGEN);
    v1::PutResponse response;
    const grpc::Status put = PutRaw(header, container, &response);
    ASSERT_TRUE(put.ok()) << put.error_message();
  };
  put_raw(keys[1], bad);

  std::vector<std::byte> decoded(CacheShape(fp).ChunkBytes(64));
  auto host = client_->Get(keys[1], decoded);
  ASSERT_FALSE(host.ok());
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok());
  {  // The same chunk intact: decoded by the transfer, not the host.
    codec::EncodeOptions inline_tables;
    inline_tables.codec = codec::CodecId::kCacheGen;
    std::vector<std::byte> good;
    ASSERT_TRUE(codec::Encode({KvShapeOf(fp, 64), Packed(source, 64, 64), {}}, inline_tables, good).ok());
    const ChunkKey intact{0xbad, 3};
    put_raw(intact, good);
    HostPagedCache dest(CacheShape(fp), 54);
    ASSERT_TRUE((*t)->GetToDevice({&intact, 1}, Target(dest, 0), nullptr).ok());
    ASSERT_EQ((*t)->stats().decoded_chunks, 1u);
    EXPECT_EQ((*t)->stats().resident_table_sets, 0u) << "inline tables travel with their chunk";
  }
  HostPagedCache dest(CacheShape(fp), 53);
  dest.Poison(0x77);
  auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_FALSE(load.ok());
  EXPECT_EQ(load.status().code(), host.status().code());
  EXPECT_EQ(load.status().message(), host.status().message()) << "the decoder's answer, as a host get gives it";
  EXPECT_NE(load.status().message().find("cachegen stream"), std::string::npos) << load.status().ToString();
  const std::vector<std::byte> untouched(dest.shape.RowBytes(), std::byte{0x77});
  for (uint32_t p = 0; p < 128; ++p) {
    ASSERT_EQ(std::memcmp(dest.Row(0, 0, p), untouched.data(), untouched.size()), 0) << "position " << p;
  }
}

}  // namespace
}  // namespace kvtier::testing
