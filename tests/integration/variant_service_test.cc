// Variants of content-mode chunks end to end over a real socket: variant puts with reuse metadata,
// GetBestVariants choosing by context, validation errors, admission, deletion.
#include <cstring>

#include "integration/test_server.h"
#include "kvtier/api/reuse.h"
#include "kvtier/client/chunker.h"

namespace kvtier::testing {
namespace {

class VariantServiceTest : public ServerFixture {
 protected:
  void SetUp() override {
    fp_ = TestFingerprint(16);
    for (uint32_t i = 0; i < 16; ++i) tokens_.push_back(1000 + i);
    content_ = Chunker(fp_).ContentKey(tokens_);
    const Chunker chunker(fp_);
    for (uint32_t c = 0; c < 4; ++c) {  // content keys of other chunks of the prompt: A, B, C, D
      std::vector<uint32_t> t(16, 7 * c + 1);
      others_.push_back(chunker.ContentKey(t));
    }
  }

  ChunkKey A() const { return others_[0]; }
  ChunkKey B() const { return others_[1]; }
  ChunkKey C() const { return others_[2]; }
  ChunkKey D() const { return others_[3]; }

  v1::ReuseMetadata Metadata(const std::vector<ChunkKey>& context, const std::vector<float>& attention,
                             float impact) const {
    v1::ReuseMetadata m;
    m.set_content_key(std::string(reinterpret_cast<const char*>(content_.ToBytes().data()), 16));
    for (const ChunkKey& k : context) m.add_context_keys(std::string(reinterpret_cast<const char*>(k.ToBytes().data()), 16));
    for (float a : attention) m.add_context_attention(a);
    m.set_context_impact(impact);
    m.add_layer_context_impact(impact / 2);
    m.add_layer_context_impact(impact * 1.5f > 1 ? 1 : impact * 1.5f);
    for (size_t i = 0; i < tokens_.size(); ++i) m.add_token_context_attention(static_cast<float>(i) / 16);
    return m;
  }

  std::vector<std::byte> Kv(uint8_t seed) const {
    std::vector<std::byte> kv(tokens_.size() * fp_.KvBytesPerToken());
    for (size_t i = 0; i < kv.size(); ++i) kv[i] = static_cast<std::byte>((i * 31 + seed * 101) & 0xff);
    return kv;
  }

  Result<PutResult> PutVariant(Client& client, const v1::ReuseMetadata& meta, uint8_t seed) {
    std::vector<ChunkKey> context;
    for (const auto& k : meta.context_keys()) context.push_back(*ChunkKey::FromBytes(k));
    const auto kv = Kv(seed);
    return client.Put(VariantKey(content_, context), tokens_, kv, {.reuse = &meta});
  }

  ModelFingerprint fp_;
  std::vector<uint32_t> tokens_;
  ChunkKey content_;
  std::vector<ChunkKey> others_;
};

TEST_F(VariantServiceTest, GetBestVariantsChoosesByContextAndReturnsBytesAndMetadata) {
  StartServer();
  auto client = NewClient("test", fp_);
  const v1::ReuseMetadata alone = Metadata({}, {}, 0.0f);
  const v1::ReuseMetadata behind_ab = Metadata({A(), B()}, {0.75f, 0.25f}, 0.4f);
  const v1::ReuseMetadata behind_c = Metadata({C()}, {}, 0.6f);
  const ChunkKey k_alone = VariantKey(content_, std::vector<ChunkKey>{});
  const ChunkKey k_ab = VariantKey(content_, std::vector<ChunkKey>{A(), B()});
  const ChunkKey k_c = VariantKey(content_, std::vector<ChunkKey>{C()});
  for (auto [meta, seed] : {std::pair{&alone, 1}, {&behind_ab, 2}, {&behind_c, 3}}) {
    auto put = PutVariant(*client, *meta, static_cast<uint8_t>(seed));
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    EXPECT_FALSE(put->already_present);
    EXPECT_TRUE(put->variant_admitted);
  }
  struct Case {
    std::vector<ChunkKey> prompt;
    ChunkKey want;
    const v1::ReuseMetadata* meta;
    uint8_t seed;
    double match;
  };
  const std::vector<Case> cases = {
      {{content_}, k_alone, &alone, 1, 1.0},                // first in the prompt: nothing before it
      {{A(), B(), content_, C()}, k_ab, &behind_ab, 2, 1.0},  // only what precedes it counts
      {{C(), content_, A(), B()}, k_c, &behind_c, 3, 1.0},
      {{A(), D(), content_}, k_ab, &behind_ab, 2, 0.75},    // A holds 0.75 of [A,B]'s attention
      {{D(), B()}, k_ab, &behind_ab, 2, 0.25},              // absent from the prompt: all of it is its context
      {{B(), A(), content_}, k_alone, &alone, 1, 0.0},      // flipped order scores 0; fewest context chunks wins
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::vector<std::byte> dest(Kv(0).size() + 64, std::byte{0xee});
    const std::span<std::byte> dests[1] = {dest};
    auto got = client->GetBestVariants({&content_, 1}, c.prompt, dests);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const VariantGetResult& r = (*got)[0];
    ASSERT_TRUE(r.chunk.found) << "case " << i;
    EXPECT_EQ(r.variant_key, c.want) << "case " << i;
    EXPECT_DOUBLE_EQ(r.context_match, c.match) << "case " << i;
    const auto want = Kv(c.seed);
    EXPECT_EQ(r.chunk.bytes, want.size());
    EXPECT_EQ(r.chunk.num_tokens, 16u);
    EXPECT_EQ(std::memcmp(dest.data(), want.data(), want.size()), 0) << "case " << i;
    EXPECT_EQ(dest[want.size()], std::byte{0xee});
    EXPECT_EQ(r.reuse.SerializeAsString(), c.meta->SerializeAsString()) << "case " << i;
  }
  // Metadata round trip, field by field, for one of them.
  {
    std::vector<std::byte> dest(Kv(0).size());
    const std::span<std::byte> dests[1] = {dest};
    const std::vector<ChunkKey> prompt = {A(), B()};
    auto got = client->GetBestVariants({&content_, 1}, prompt, dests);
    ASSERT_TRUE(got.ok());
    const v1::ReuseMetadata& m = (*got)[0].reuse;
    ASSERT_EQ(m.context_keys_size(), 2);
    EXPECT_EQ(*ChunkKey::FromBytes(m.context_keys(0)), A());
    EXPECT_EQ(*ChunkKey::FromBytes(m.content_key()), content_);
    EXPECT_FLOAT_EQ(m.context_attention(0), 0.75f);
    EXPECT_FLOAT_EQ(m.context_impact(), 0.4f);
    ASSERT_EQ(m.layer_context_impact_size(), 2);
    EXPECT_FLOAT_EQ(m.layer_context_impact(0), 0.2f);
    ASSERT_EQ(m.token_context_attention_size(), 16);
    EXPECT_FLOAT_EQ(m.token_context_attention(15), 15.0f / 16);
  }
  // A plain Get of a variant key keeps working.
  std::vector<std::byte> dest(Kv(0).size());
  auto plain = client->Get(k_c, dest);
  ASSERT_TRUE(plain.ok() && plain->found);
  EXPECT_EQ(std::memcmp(dest.data(), Kv(3).data(), dest.size()), 0);
}

TEST_F(VariantServiceTest, BatchesMissesAndOtherNamespaces) {
  StartServer();
  auto client = NewClient("test", fp_);
  ASSERT_TRUE(PutVariant(*client, Metadata({A()}, {}, 0.5f), 4).ok());
  const ChunkKey keys[2] = {ChunkKey{5, 5}, content_};
  std::vector<std::byte> d0(Kv(0).size()), d1(Kv(0).size());
  const std::span<std::byte> dests[2] = {d0, d1};
  const std::vector<ChunkKey> prompt = {A(), content_};
  auto got = client->GetBestVariants(keys, prompt, dests);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_FALSE((*got)[0].chunk.found);
  ASSERT_TRUE((*got)[1].chunk.found);
  EXPECT_EQ((*got)[1].variant_key, VariantKey(content_, std::vector<ChunkKey>{A()}));
  EXPECT_EQ(std::memcmp(d1.data(), Kv(4).data(), d1.size()), 0);
  // Another namespace sees none of them.
  auto other = NewClient("other", fp_);
  auto theirs = other->GetBestVariants({&content_, 1}, prompt, {&dests[0], 1});
  ASSERT_TRUE(theirs.ok());
  EXPECT_FALSE((*theirs)[0].chunk.found);
  // Deleting the content key deletes its variants.
  auto deleted = client->Delete({&content_, 1});
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1u);
  auto gone = client->GetBestVariants({&content_, 1}, prompt, {&dests[0], 1});
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE((*gone)[0].chunk.found);
}

TEST_F(VariantServiceTest, EncodedVariantsAreDecodedLikeGets) {
  StartServer();
  ClientOptions o;
  o.endpoint = server_->address();
  o.name_space = "test";
  o.fingerprint = fp_;
  o.encode.codec = codec::CodecId::kLossless;
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(PutVariant(**client, Metadata({B()}, {}, 0.5f), 6).ok());
  std::vector<std::byte> dest(Kv(0).size());
  const std::span<std::byte> dests[1] = {dest};
  const std::vector<ChunkKey> prompt = {B()};
  auto got = (*client)->GetBestVariants({&content_, 1}, prompt, dests);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE((*got)[0].chunk.found);
  EXPECT_EQ((*got)[0].chunk.bytes, dest.size());
  EXPECT_EQ(std::memcmp(dest.data(), Kv(6).data(), dest.size()), 0);
}

TEST_F(VariantServiceTest, InvalidVariantPutsAreInvalidArgumentNamingTheProblem) {
  StartServer();
  auto client = NewClient("test", fp_);
  const v1::ReuseMetadata meta = Metadata({A()}, {}, 0.5f);
  const auto kv = Kv(1);
  const ChunkKey wrong{1, 2};
  auto put = client->Put(wrong, tokens_, kv, {.reuse = &meta});
  ASSERT_EQ(put.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(put.status().message().find(wrong.ToHex()), std::string::npos) << put.status().message();
  EXPECT_NE(put.status().message().find(VariantKey(content_, std::vector<ChunkKey>{A()}).ToHex()), std::string::npos);

  v1::ReuseMetadata bad = meta;
  bad.set_context_impact(2.0f);
  put = PutVariant(*client, bad, 1);
  ASSERT_EQ(put.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(put.status().message().find("reuse.context_impact"), std::string::npos) << put.status().message();

  bad = meta;
  bad.add_context_keys("short");
  put = client->Put(wrong, tokens_, kv, {.reuse = &bad});
  ASSERT_EQ(put.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(put.status().message().find("reuse.context_keys[1]"), std::string::npos) << put.status().message();

  bad = meta;
  bad.add_layer_context_impact(0.1f);  // 3 values for 2 layers
  put = PutVariant(*client, bad, 1);
  ASSERT_EQ(put.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(put.status().message().find("layer_context_impact has 3 values for 2 layers"), std::string::npos);
}

TEST_F(VariantServiceTest, KeepExistingAnswersNotAdmitted) {
  StartServer(64ull << 20, [](ServerConfig& c) {
    c.store.variants.max_variants = 1;
    c.store.variants.admission = "keep-existing";
  });
  auto client = NewClient("test", fp_);
  auto first = PutVariant(*client, Metadata({A()}, {}, 0.5f), 1);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->variant_admitted);
  auto second = PutVariant(*client, Metadata({B()}, {}, 0.5f), 2);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_FALSE(second->variant_admitted);
  EXPECT_FALSE(second->already_present);
  const ChunkKey k_b = VariantKey(content_, std::vector<ChunkKey>{B()});
  EXPECT_FALSE((*client->Exists({&k_b, 1}))[0]);
}

}  // namespace
}  // namespace kvtier::testing
