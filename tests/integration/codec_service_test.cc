// Encoded chunks through a real server: clients encode before put and decode after get, the server
// checks containers at commit, keeps shared cachegen profiles per namespace, and decodes to raw for a
// client that asks. Decoded bytes are compared with a local decode of the same container (codecs are
// deterministic), so lossy codecs are checked byte for byte too.
#include <cmath>
#include <cstring>
#include <numeric>

#include "integration/test_server.h"
#include "kvtier/api/convert.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"

namespace kvtier::testing {
namespace {

constexpr uint32_t kTokens = 16;

codec::KvShape ShapeOf(const ModelFingerprint& fp, uint32_t tokens) {
  return {fp.num_layers, fp.num_kv_heads, fp.head_dim, tokens, fp.dtype};
}

// KV-like fp16 values: smooth across tokens, different per channel, finite.
std::vector<std::byte> SmoothKv(const ModelFingerprint& fp, uint32_t tokens, float seed) {
  const codec::KvShape shape = ShapeOf(fp, tokens);
  std::vector<float> values(shape.NumValues());
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = std::sin(0.37f * static_cast<float>(i % 977) + seed) * (1.0f + static_cast<float>(i % 7));
  }
  std::vector<std::byte> out(shape.RawBytes());
  for (size_t i = 0; i < values.size(); ++i) {
    // fp16 by way of the codec's own raw round trip would be circular; convert by hand.
    const float f = values[i];
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
    uint16_t h = sign;
    if (exponent > 0 && exponent < 31) h |= static_cast<uint16_t>(exponent << 10 | ((bits >> 13) & 0x3ffu));
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

std::vector<std::byte> Encoded(const ModelFingerprint& fp, std::span<const std::byte> kv, const codec::EncodeOptions& o) {
  std::vector<std::byte> out;
  const Status s = codec::Encode({ShapeOf(fp, kTokens), kv, {}}, o, out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::vector<std::byte> LocallyDecoded(std::span<const std::byte> encoded, const codec::ModelProfile* profile) {
  auto info = codec::Inspect(encoded);
  EXPECT_TRUE(info.ok()) << info.status().ToString();
  std::vector<std::byte> out(info->shape.RawBytes());
  codec::DecodeOptions o;
  o.profiles = [profile](uint64_t id) { return profile != nullptr && profile->id() == id ? profile : nullptr; };
  EXPECT_TRUE(codec::Decode(encoded, out, o).ok());
  return out;
}

codec::ModelProfile BuildProfile(const ModelFingerprint& fp) {
  std::vector<std::vector<std::byte>> samples;
  std::vector<codec::KvView> views;
  for (int i = 0; i < 4; ++i) samples.push_back(SmoothKv(fp, kTokens, 10.0f + i));
  for (const auto& s : samples) views.push_back({ShapeOf(fp, kTokens), s, {}});
  auto profile = codec::ModelProfile::Build(views);
  EXPECT_TRUE(profile.ok()) << profile.status().ToString();
  return std::move(profile).value();
}

class CodecServiceTest : public ServerFixture {
 protected:
  void SetUp() override { StartServer(); }

  std::unique_ptr<Client> EncodingClient(const codec::EncodeOptions& encode, bool server_decode = false) {
    ClientOptions o;
    o.endpoint = server_->address();
    o.name_space = "test";
    o.fingerprint = TestFingerprint();
    o.encode = encode;
    o.server_decode = server_decode;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  }

  // A put stream of one chunk whose header says `codec` and whose payload is `payload`.
  grpc::Status RawPut(const ChunkKey& key, v1::Codec codec, std::span<const std::byte> payload, uint32_t tokens) {
    std::vector<uint32_t> ids(tokens);
    std::iota(ids.begin(), ids.end(), 0u);
    v1::PutRequest header = PutHeaderFor(Context(), key, payload, ids);
    header.mutable_header()->set_codec(codec);
    v1::PutResponse response;
    return PutRaw(header, payload, &response);
  }

  static void ExpectStatus(const grpc::Status& s, grpc::StatusCode code, const std::string& fragment) {
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(fragment), std::string::npos) << "message: " << s.error_message();
  }
};

TEST_F(CodecServiceTest, EveryCodecRoundTripsThroughTheServer) {
  const ModelFingerprint fp = TestFingerprint();
  const auto kv = SmoothKv(fp, kTokens, 1.0f);
  uint64_t n = 0;
  for (codec::CodecId id : codec::kAllCodecs) {
    if (id == codec::CodecId::kCacheGen) continue;  // with a profile below; inline tables here:
    codec::EncodeOptions encode;
    encode.codec = id;
    auto writer = EncodingClient(encode);
    const ChunkKey key{0xc0dec, ++n};
    auto put = writer->Put(key, TokensFor(key, kTokens), kv);
    ASSERT_TRUE(put.ok()) << codec::CodecName(id) << ": " << put.status().ToString();

    // A plain client decodes whatever codec the chunk has.
    std::vector<std::byte> dest(kv.size() + 100, std::byte{0x5a});
    auto got = client_->Get(key, dest);
    ASSERT_TRUE(got.ok() && got->found) << codec::CodecName(id) << ": " << got.status().ToString();
    EXPECT_EQ(got->bytes, kv.size());
    const auto expected = LocallyDecoded(Encoded(fp, kv, encode), nullptr);
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), dest.begin())) << codec::CodecName(id);
    EXPECT_EQ(dest[kv.size()], std::byte{0x5a}) << "wrote past the decoded size";
    if (codec::IsLossless(id)) {
      EXPECT_TRUE(std::equal(kv.begin(), kv.end(), dest.begin())) << codec::CodecName(id);
    }
  }
  codec::EncodeOptions inline_cachegen;
  inline_cachegen.codec = codec::CodecId::kCacheGen;
  const ChunkKey key{0xc0dec, 99};
  ASSERT_TRUE(EncodingClient(inline_cachegen)->Put(key, TokensFor(key, kTokens), kv).ok());
  std::vector<std::byte> dest(kv.size());
  ASSERT_TRUE(client_->Get(key, dest)->found);
  EXPECT_EQ(dest, LocallyDecoded(Encoded(fp, kv, inline_cachegen), nullptr));
}

TEST_F(CodecServiceTest, GetBatchEncodedHandsBackTheStoredContainers) {
  const ModelFingerprint fp = TestFingerprint();
  const auto kv = SmoothKv(fp, kTokens, 3.0f);
  codec::EncodeOptions int8;
  int8.codec = codec::CodecId::kInt8;
  const std::vector<ChunkKey> keys{ChunkKey{0xe7c, 1}, ChunkKey{0xe7c, 2}, ChunkKey{0xe7c, 3}};
  ASSERT_TRUE(EncodingClient(int8)->Put(keys[0], TokensFor(keys[0], kTokens), kv).ok());
  ASSERT_TRUE(client_->Put(keys[1], TokensFor(keys[1], kTokens), kv).ok());  // raw
  const std::vector<std::byte> container = Encoded(fp, kv, int8);
  // Even a client that asks the server to decode gets the containers here.
  for (bool server_decode : {false, true}) {
    SCOPED_TRACE(server_decode ? "server_decode" : "client decode");
    auto reader = EncodingClient({}, server_decode);
    std::vector<std::vector<std::byte>> bufs(3, std::vector<std::byte>(kv.size(), std::byte{0x5a}));
    std::vector<std::span<std::byte>> dests(bufs.begin(), bufs.end());
    auto got = reader->GetBatchEncoded(keys, dests);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE((*got)[0].found && (*got)[1].found);
    EXPECT_FALSE((*got)[2].found);
    EXPECT_EQ((*got)[0].codec, v1::CODEC_INT8);
    EXPECT_EQ((*got)[0].bytes, container.size());
    EXPECT_TRUE(std::equal(container.begin(), container.end(), bufs[0].begin())) << "the stored container";
    EXPECT_EQ(bufs[0][container.size()], std::byte{0x5a}) << "wrote past the container";
    EXPECT_EQ((*got)[1].codec, v1::CODEC_RAW);
    EXPECT_EQ(bufs[1], kv);
    // GetBatch decodes the same chunk.
    auto decoded = reader->GetBatch(keys, dests);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ((*decoded)[0].codec, v1::CODEC_RAW);
    EXPECT_EQ(bufs[0], LocallyDecoded(container, nullptr));
  }
  std::vector<std::byte> small(container.size() - 1);
  const std::span<std::byte> one[1] = {small};
  auto too_small = client_->GetBatchEncoded(std::span(keys).first(1), one);
  ASSERT_FALSE(too_small.ok());
  EXPECT_EQ(too_small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_small.status().message().find("is smaller than chunk"), std::string::npos)
      << too_small.status().ToString();
  const std::span<std::byte> none[1] = {small};
  EXPECT_EQ(client_->GetBatchEncoded({}, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->GetBatchEncoded(keys, none).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(CodecServiceTest, EncodedChunksTakeLessSpaceOnTheServer) {
  const ModelFingerprint fp = TestFingerprint();
  const auto kv = SmoothKv(fp, kTokens, 2.0f);
  const uint64_t start = HostUsedBytes();
  const ChunkKey raw_key{0x5111, 1};
  ASSERT_TRUE(client_->Put(raw_key, TokensFor(raw_key, kTokens), kv).ok());
  const uint64_t raw_used = HostUsedBytes() - start;
  codec::EncodeOptions encode;
  encode.codec = codec::CodecId::kInt8;
  const ChunkKey key{0x5111, 2};
  ASSERT_TRUE(EncodingClient(encode)->Put(key, TokensFor(key, kTokens), kv).ok());
  const uint64_t int8_used = HostUsedBytes() - start - raw_used;
  // int8 of fp16 is about half; the arena's 4 KiB allocation unit rounds both up.
  EXPECT_LE(int8_used * 100, raw_used * 65) << int8_used << " vs " << raw_used;
}

TEST_F(CodecServiceTest, SharedProfileMustBeStoredBeforeChunksReferenceIt) {
  const ModelFingerprint fp = TestFingerprint();
  const codec::ModelProfile profile = BuildProfile(fp);
  codec::EncodeOptions encode;
  encode.codec = codec::CodecId::kCacheGen;
  encode.profile = &profile;
  auto writer = EncodingClient(encode);
  const auto kv = SmoothKv(fp, kTokens, 3.0f);
  const ChunkKey key{0x9f, 1};

  auto refused = writer->Put(key, TokensFor(key, kTokens), kv);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("PutProfile it first"), std::string::npos) << refused.status().message();
  EXPECT_FALSE((*client_->Exists(std::vector<ChunkKey>{key}))[0]);

  auto id = writer->PutProfile("llama-test", profile);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, profile.id());
  ASSERT_TRUE(writer->Put(key, TokensFor(key, kTokens), kv).ok());

  // A fresh client has never seen the profile: it fetches it by id to decode.
  auto reader = NewClient();
  std::vector<std::byte> dest(kv.size());
  auto got = reader->Get(key, dest);
  ASSERT_TRUE(got.ok() && got->found) << got.status().ToString();
  EXPECT_EQ(dest, LocallyDecoded(Encoded(fp, kv, encode), &profile));

  // By name, byte-exact.
  auto fetched = reader->GetProfile("llama-test");
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ((*fetched)->id(), profile.id());

  // Another namespace does not see it.
  auto other = NewClient("other-tenant");
  auto missing = other->GetProfile("llama-test");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(CodecServiceTest, ServerDecodesForClientsThatAskForRaw) {
  const ModelFingerprint fp = TestFingerprint();
  const codec::ModelProfile profile = BuildProfile(fp);
  codec::EncodeOptions encode;
  encode.codec = codec::CodecId::kCacheGen;
  encode.profile = &profile;
  auto writer = EncodingClient(encode);
  ASSERT_TRUE(writer->PutProfile("p", profile).ok());
  const auto kv = SmoothKv(fp, kTokens, 4.0f);
  const ChunkKey key{0x7a, 1};
  ASSERT_TRUE(writer->Put(key, TokensFor(key, kTokens), kv).ok());

  // Raw stub: the header must say RAW and describe the decoded bytes.
  v1::GetRequest request;
  *request.mutable_context() = Context();
  request.add_keys(KeyToWire(key));
  request.set_decode_to_raw(true);
  auto stub = RawStub();
  grpc::ClientContext ctx;
  auto stream = stub->Get(&ctx, request);
  v1::GetResponse msg;
  ASSERT_TRUE(stream->Read(&msg));
  ASSERT_TRUE(msg.has_header() && msg.header().found());
  EXPECT_EQ(msg.header().codec(), v1::CODEC_RAW);
  EXPECT_EQ(msg.header().payload_bytes(), kv.size());
  const uint64_t checksum = msg.header().checksum();
  std::string data;
  while (stream->Read(&msg)) data += msg.data();
  ASSERT_TRUE(stream->Finish().ok());
  const auto expected = LocallyDecoded(Encoded(fp, kv, encode), &profile);
  ASSERT_EQ(data.size(), expected.size());
  EXPECT_EQ(0, std::memcmp(data.data(), expected.data(), data.size()));
  EXPECT_EQ(checksum, Checksum64(expected));

  // The client library's option does the same.
  auto raw_reader = EncodingClient({}, /*server_decode=*/true);
  std::vector<std::byte> dest(kv.size());
  ASSERT_TRUE(raw_reader->Get(key, dest)->found);
  EXPECT_EQ(dest, expected);
}

TEST_F(CodecServiceTest, ContainersThatDoNotMatchTheHeaderAreRefused) {
  const ModelFingerprint fp = TestFingerprint();
  const auto kv = SmoothKv(fp, kTokens, 5.0f);
  codec::EncodeOptions lossless;
  lossless.codec = codec::CodecId::kLossless;
  const auto container = Encoded(fp, kv, lossless);

  ExpectStatus(RawPut({1, 1}, v1::CODEC_INT8, container, kTokens), grpc::StatusCode::INVALID_ARGUMENT,
               "the container holds lossless");
  ExpectStatus(RawPut({1, 2}, v1::CODEC_LOSSLESS, container, kTokens - 1), grpc::StatusCode::INVALID_ARGUMENT,
               "does not match the fingerprint");
  auto garbage = kv;
  garbage.resize(container.size());
  ExpectStatus(RawPut({1, 3}, v1::CODEC_LOSSLESS, garbage, kTokens), grpc::StatusCode::INVALID_ARGUMENT,
               "not a valid lossless container");
  ExpectStatus(RawPut({1, 4}, static_cast<v1::Codec>(42), container, kTokens), grpc::StatusCode::INVALID_ARGUMENT,
               "unknown codec 42");
  ExpectStatus(RawPut({1, 5}, v1::CODEC_LOSSLESS, std::span(container).first(10), kTokens),
               grpc::StatusCode::INVALID_ARGUMENT, "encoded payload of 10 bytes is outside");
  EXPECT_EQ((*client_->Exists(std::vector<ChunkKey>{{1, 1}, {1, 2}, {1, 3}, {1, 4}, {1, 5}})),
            std::vector<bool>(5, false));
  // And a correct one goes through.
  EXPECT_TRUE(RawPut({1, 6}, v1::CODEC_LOSSLESS, container, kTokens).ok());
}

TEST_F(CodecServiceTest, BadProfilesAreRefused) {
  auto stub = RawStub();
  auto put = [&](const std::string& name, const std::string& bytes) {
    v1::PutProfileRequest request;
    *request.mutable_context() = Context();
    request.set_name(name);
    request.set_profile(bytes);
    grpc::ClientContext ctx;
    v1::PutProfileResponse response;
    return stub->PutProfile(&ctx, request, &response);
  };
  ExpectStatus(put("x", "not a profile"), grpc::StatusCode::INVALID_ARGUMENT, "profile does not parse");

  ModelFingerprint other = TestFingerprint();
  other.num_layers = 3;
  const codec::ModelProfile wrong_shape = BuildProfile(other);
  const auto bytes = wrong_shape.serialized();
  ExpectStatus(put("x", std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size())),
               grpc::StatusCode::INVALID_ARGUMENT, "does not match the fingerprint");
  ExpectStatus(put("", "x"), grpc::StatusCode::INVALID_ARGUMENT, "profile name must be 1..128 bytes");

  v1::GetProfileRequest get;
  *get.mutable_context() = Context();
  grpc::ClientContext ctx;
  v1::GetProfileResponse response;
  ExpectStatus(stub->GetProfile(&ctx, get, &response), grpc::StatusCode::INVALID_ARGUMENT, "needs a name or a profile id");
  get.set_profile_id(12345);
  grpc::ClientContext ctx2;
  ExpectStatus(stub->GetProfile(&ctx2, get, &response), grpc::StatusCode::NOT_FOUND, "no profile with id");
}

}  // namespace
}  // namespace kvtier::testing
