// Variants in the Store: validation of variant puts, selection, admission, consistency with eviction,
// deletion and corruption, namespaces and fingerprints.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <vector>

#include "kvtier/api/chunk_keys.h"
#include "kvtier/api/reuse.h"
#include "kvtier/kvstore/store.h"

namespace kvtier {
namespace {

ModelFingerprint VariantFp(std::string model = "variant-test") {
  ModelFingerprint fp;
  fp.model_id = std::move(model);
  fp.num_layers = 2;
  fp.num_kv_heads = 2;
  fp.head_dim = 32;
  fp.dtype = DType::kFp16;
  fp.chunk_tokens = 4;
  return fp;  // 512 bytes per token
}

const std::vector<uint32_t> kPassageTokens = {11, 12, 13, 14};
const ChunkKey kContextA{0, 1}, kContextB{0, 2}, kContextC{0, 3};

class VariantStoreTest : public ::testing::Test {
 protected:
  void Open(uint32_t max_variants = 4, std::string admission = "replace-least-recent") {
    StoreOptions options;
    options.host_capacity_bytes = 4 << 20;
    options.host_prefault = false;
    options.host_huge_pages = false;
    options.variants.max_variants = max_variants;
    options.variants.admission = std::move(admission);
    options.now_ns = [this] { return now_; };
    auto store = Store::Open(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    scope_ = *store_->OpenScope("tenant-a", VariantFp(), true);
  }

  ChunkKey content() const { return DeriveContentKey(VariantFp().Digest(), kPassageTokens); }

  std::shared_ptr<VariantMeta> Meta(std::vector<ChunkKey> context, std::vector<float> weights = {}) const {
    auto m = std::make_shared<VariantMeta>();
    m->content_key = content();
    m->context = std::move(context);
    m->context_attention = std::move(weights);
    m->context_impact = 0.5f;
    return m;
  }

  static std::vector<std::byte> Payload(uint8_t seed) {
    std::vector<std::byte> p(kPassageTokens.size() * VariantFp().KvBytesPerToken());
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::byte>((i * 7 + seed) & 0xff);
    return p;
  }

  Result<PutOutcome> PutVariant(const Scope& scope, std::shared_ptr<const VariantMeta> meta, uint8_t seed,
                                const ChunkKey* key_override = nullptr) {
    const std::vector<std::byte> payload = Payload(seed);
    PutSpec spec;
    spec.key = key_override ? *key_override : VariantKey(meta->content_key, meta->context);
    spec.token_ids = kPassageTokens;
    spec.payload_bytes = payload.size();
    spec.checksum = Checksum64(payload);
    spec.variant = std::move(meta);
    auto put = store_->BeginPut(scope, spec);
    if (!put.ok()) return put.status();
    KVTIER_RETURN_IF_ERROR(put->Append(payload));
    return put->Commit();
  }

  // The chosen variant's key (zero on a miss) and its payload's first byte.
  std::pair<ChunkKey, int> Choose(std::vector<ChunkKey> new_context) {
    auto choice = store_->SelectVariant(scope_, content(), new_context);
    EXPECT_TRUE(choice.ok()) << choice.status().ToString();
    if (!choice.ok() || !choice->ref) return {ChunkKey{}, -1};
    return {choice->variant_key, static_cast<int>(choice->ref.payload()[0])};
  }

  int64_t now_ = 1000;
  std::unique_ptr<Store> store_;
  Scope scope_;
};

TEST_F(VariantStoreTest, SelectsTheBestVariantWithItsBytesAndMetadata) {
  Open();
  const std::vector<ChunkKey> none;
  const ChunkKey alone = VariantKey(content(), none);
  const ChunkKey behind_ab = VariantKey(content(), std::vector<ChunkKey>{kContextA, kContextB});
  const ChunkKey behind_c = VariantKey(content(), std::vector<ChunkKey>{kContextC});
  ASSERT_TRUE(PutVariant(scope_, Meta({}), 1).ok());
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextA, kContextB}, {0.75f, 0.25f}), 2).ok());
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextC}), 3).ok());
  EXPECT_EQ(store_->Stats().variants, 3u);
  EXPECT_EQ(Choose({}), std::make_pair(alone, 1));
  EXPECT_EQ(Choose({kContextA, kContextB}), std::make_pair(behind_ab, 2));
  EXPECT_EQ(Choose({kContextC}), std::make_pair(behind_c, 3));
  // Flipped: all score 0, the fewest context chunks wins.
  EXPECT_EQ(Choose({kContextB, kContextA}), std::make_pair(alone, 1));
  auto choice = store_->SelectVariant(scope_, content(), std::vector<ChunkKey>{kContextA, kContextC, kContextB});
  ASSERT_TRUE(choice.ok());
  // [A,B] and [C] both keep all they saw in order (1.0); [A,B] saw two of the new context's chunks.
  EXPECT_EQ(choice->variant_key, behind_ab);
  EXPECT_DOUBLE_EQ(choice->match.score, 1.0);
  choice = store_->SelectVariant(scope_, content(), std::vector<ChunkKey>{kContextA});
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->variant_key, behind_ab);
  EXPECT_DOUBLE_EQ(choice->match.score, 0.75);
  ASSERT_NE(choice->meta, nullptr);
  EXPECT_EQ(choice->meta->context, (std::vector<ChunkKey>{kContextA, kContextB}));
  EXPECT_FLOAT_EQ(choice->meta->context_impact, 0.5f);
  // A plain get of a variant key works, and the metadata is found by key.
  auto ref = store_->Get(scope_, behind_c);
  ASSERT_TRUE(ref.ok() && *ref);
  EXPECT_EQ(static_cast<int>(ref->payload()[0]), 3);
  ASSERT_NE(store_->VariantOf(scope_, behind_c), nullptr);
  EXPECT_EQ(store_->VariantOf(scope_, content()), nullptr);
  // An unknown content key is a miss.
  auto miss = store_->SelectVariant(scope_, ChunkKey{9, 9}, std::vector<ChunkKey>{});
  ASSERT_TRUE(miss.ok());
  EXPECT_FALSE(miss->ref);
}

TEST_F(VariantStoreTest, InvalidVariantPutsNameTheProblem) {
  Open();
  const ChunkKey wrong{1, 2};
  auto bad_key = PutVariant(scope_, Meta({kContextA}), 1, &wrong);
  ASSERT_EQ(bad_key.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_key.status().message().find("key " + wrong.ToHex() + " is not VariantKey(content_key, context_keys) = " +
                                             VariantKey(content(), std::vector<ChunkKey>{kContextA}).ToHex()),
            std::string::npos)
      << bad_key.status().message();

  auto other_content = Meta({kContextA});
  other_content->content_key = ChunkKey{3, 3};
  auto bad_content = PutVariant(scope_, other_content, 1);
  ASSERT_EQ(bad_content.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_content.status().message().find("reuse.content_key " + ChunkKey{3, 3}.ToHex() +
                                                 " is not the content key of the chunk's token ids, " +
                                                 content().ToHex()),
            std::string::npos)
      << bad_content.status().message();

  auto short_weights = Meta({kContextA, kContextB}, {1.0f});
  EXPECT_NE(PutVariant(scope_, short_weights, 1).status().message().find("context_attention has 1 values for 2"),
            std::string::npos);
  auto bad_layers = Meta({kContextA});
  bad_layers->layer_context_impact = {0.5f, 0.5f, 0.5f};
  EXPECT_NE(PutVariant(scope_, bad_layers, 1).status().message().find("layer_context_impact has 3 values for 2 layers"),
            std::string::npos);
  auto bad_tokens = Meta({kContextA});
  bad_tokens->token_context_attention = {0.1f, 0.2f};
  EXPECT_NE(PutVariant(scope_, bad_tokens, 1).status().message().find("token_context_attention has 2 values for 4"),
            std::string::npos);
  auto out_of_range = Meta({kContextA});
  out_of_range->token_context_attention = {0.1f, 0.2f, 1.5f, 0.0f};
  auto r = PutVariant(scope_, out_of_range, 1);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("token_context_attention[2]"), std::string::npos) << r.status().message();
  auto impact = Meta({kContextA});
  impact->context_impact = -0.1f;
  EXPECT_NE(PutVariant(scope_, impact, 1).status().message().find("context_impact"), std::string::npos);
  EXPECT_EQ(store_->Stats().variants, 0u);
  EXPECT_EQ(store_->Stats().tiers[0].chunks, 0u);
}

TEST_F(VariantStoreTest, NamespacesIsolateGroupsAndFingerprintsMustMatch) {
  Open();
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextA}), 1).ok());
  const Scope other = *store_->OpenScope("tenant-b", VariantFp(), true);
  auto miss = store_->SelectVariant(other, content(), std::vector<ChunkKey>{kContextA});
  ASSERT_TRUE(miss.ok());
  EXPECT_FALSE(miss->ref);
  ASSERT_TRUE(PutVariant(other, Meta({kContextB}), 2).ok());
  EXPECT_EQ(Choose({kContextB}).second, 1);  // tenant-a still sees only its own variant
  // Same namespace, another fingerprint: the usual error.
  const Scope other_fp = *store_->OpenScope("tenant-a", VariantFp("other-model"), true);
  auto mismatch = store_->SelectVariant(other_fp, content(), std::vector<ChunkKey>{});
  EXPECT_EQ(mismatch.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.status().message().find("fingerprint mismatch"), std::string::npos);
}

TEST_F(VariantStoreTest, DeletingTheContentKeyDeletesEveryVariant) {
  Open();
  const ChunkKey v1 = VariantKey(content(), std::vector<ChunkKey>{kContextA});
  const ChunkKey v2 = VariantKey(content(), std::vector<ChunkKey>{kContextB});
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextA}), 1).ok());
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextB}), 2).ok());
  const Scope other = *store_->OpenScope("tenant-b", VariantFp(), true);
  ASSERT_TRUE(PutVariant(other, Meta({kContextA}), 3).ok());
  auto deleted = store_->Delete(scope_, std::vector<ChunkKey>{content()});
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2u);
  EXPECT_EQ(*store_->Exists(scope_, std::vector<ChunkKey>{v1, v2}), (std::vector<bool>{false, false}));
  EXPECT_EQ(Choose({kContextA}).first, ChunkKey{});
  EXPECT_EQ(store_->Stats().variants, 1u);  // tenant-b's is untouched
  auto theirs = store_->SelectVariant(other, content(), std::vector<ChunkKey>{kContextA});
  ASSERT_TRUE(theirs.ok() && theirs->ref);
}

TEST_F(VariantStoreTest, AVariantWhoseChunkIsGoneIsNeverReturned) {
  Open();
  const ChunkKey v_ab = VariantKey(content(), std::vector<ChunkKey>{kContextA, kContextB});
  ASSERT_TRUE(PutVariant(scope_, Meta({}), 1).ok());
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextA, kContextB}), 2).ok());
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextA, kContextC}), 3).ok());  // 0.5 for [A,B]
  EXPECT_EQ(Choose({kContextA, kContextB}).second, 2);
  // Deleted by its own key: the next best live one answers.
  ASSERT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{v_ab}), 1u);
  EXPECT_EQ(Choose({kContextA, kContextB}).second, 3);
  EXPECT_EQ(store_->Stats().variants, 2u);
}

TEST_F(VariantStoreTest, ReplaceLeastRecentDeletesTheReplacedChunk) {
  Open(/*max_variants=*/2);
  const ChunkKey v_a = VariantKey(content(), std::vector<ChunkKey>{kContextA});
  const ChunkKey v_b = VariantKey(content(), std::vector<ChunkKey>{kContextB});
  const ChunkKey v_c = VariantKey(content(), std::vector<ChunkKey>{kContextC});
  now_ = 10;
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextA}), 1).ok());
  now_ = 20;
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextB}), 2).ok());
  now_ = 30;
  EXPECT_EQ(Choose({kContextA}).first, v_a);  // v_a chosen at 30: v_b (put at 20) is now the least recent
  now_ = 40;
  auto put = PutVariant(scope_, Meta({kContextC}), 3);
  ASSERT_TRUE(put.ok());
  EXPECT_TRUE(put->variant_admitted);
  EXPECT_EQ(*store_->Exists(scope_, std::vector<ChunkKey>{v_a, v_b, v_c}), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(store_->Stats().variants, 2u);
}

TEST_F(VariantStoreTest, KeepExistingRefusesWithoutStoring) {
  Open(/*max_variants=*/2, "keep-existing");
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextA}), 1).ok());
  ASSERT_TRUE(PutVariant(scope_, Meta({kContextB}), 2).ok());
  auto refused = PutVariant(scope_, Meta({kContextC}), 3);
  ASSERT_TRUE(refused.ok()) << refused.status().ToString();
  EXPECT_FALSE(refused->variant_admitted);
  EXPECT_FALSE(refused->already_present);
  const ChunkKey behind_c = VariantKey(content(), std::vector<ChunkKey>{kContextC});
  EXPECT_FALSE((*store_->Exists(scope_, std::vector<ChunkKey>{behind_c}))[0]);
  EXPECT_EQ(store_->Stats().tiers[0].chunks, 2u);
  // A put of a stored variant is the usual no-op.
  auto again = PutVariant(scope_, Meta({kContextA}), 1);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_present);
  EXPECT_TRUE(again->variant_admitted);
}

TEST_F(VariantStoreTest, ARePutOfAPlainChunkIndexesItAsAVariant) {
  Open();
  const ChunkKey key = VariantKey(content(), std::vector<ChunkKey>{kContextA});
  const std::vector<std::byte> payload = Payload(5);
  PutSpec spec;
  spec.key = key;
  spec.token_ids = kPassageTokens;
  spec.payload_bytes = payload.size();
  spec.checksum = Checksum64(payload);
  auto plain = store_->BeginPut(scope_, spec);
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE(plain->Append(payload).ok());
  ASSERT_TRUE(plain->Commit().ok());
  EXPECT_EQ(Choose({kContextA}).first, ChunkKey{});
  auto variant = PutVariant(scope_, Meta({kContextA}), 5);
  ASSERT_TRUE(variant.ok());
  EXPECT_TRUE(variant->already_present);
  EXPECT_EQ(Choose({kContextA}), std::make_pair(key, 5));
}

}  // namespace
}  // namespace kvtier
