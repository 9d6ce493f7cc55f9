// End to end on the real model through a real server: variants of a passage computed behind different
// contexts are put with their reuse metadata, the server returns the best one for a new context, and the
// worker re-rotates it, plans with Cache-Craft or selects with CacheBlend, and blends it into a prefill.
#include <gtest/gtest.h>

#include "integration/test_server.h"
#include "kvtier/api/reuse.h"
#include "kvtier/client/blend.h"
#include "kvtier/client/cachecraft.h"
#include "kvtier/client/chunker.h"
#include "kvtier/client/rope.h"
#include "kvtier/refmodel/blend.h"
#include "kvtier/refmodel/eval.h"
#include "kvtier/refmodel/model.h"
#include "kvtier/refmodel/tokenizer.h"
#include "test_data.h"

namespace kvtier::testing {
namespace {

using refmodel::KeyForm;
using refmodel::Session;

constexpr int kBos = 1;
constexpr int kLen = 32;  // tokens per passage

std::vector<uint32_t> U32(std::span<const int> t) { return std::vector<uint32_t>(t.begin(), t.end()); }

class BlendIntegrationTest : public ServerFixture {
 protected:
  void SetUp() override {
    auto m = refmodel::Model::Load(kTestDataDir + "/stories260K.bin");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::make_unique<refmodel::Model>(*m);
    auto tok = refmodel::Tokenizer::Load(kTestDataDir + "/tok512.bin", model_->config().vocab_size);
    ASSERT_TRUE(tok.ok());
    const auto pieces = refmodel::SplitCorpus(ReadFile(kTestDataDir + "/tinystories_val.txt"));
    for (size_t i = 0; passages_.size() < 3 && i < pieces.size(); i += 97) {
      auto t = tok->Encode(pieces[i], false, false);
      if (t.size() >= size_t(kLen) + 8) passages_.push_back({t.begin(), t.begin() + kLen});
    }
    ASSERT_EQ(passages_.size(), 3u);
    fp_ = refmodel::KvFingerprint(model_->config(), kLen);
    StartServer();
    reuse_client_ = NewClient("reuse", fp_);
    Chunker chunker(fp_);
    for (const auto& p : passages_) keys_.push_back(chunker.ContentKey(U32(p)));
  }

  std::vector<int> Prompt(std::span<const int> order) const {
    std::vector<int> tokens = {kBos};
    for (int i : order) tokens.insert(tokens.end(), passages_[i].begin(), passages_[i].end());
    return tokens;
  }

  // Prefills BOS + passages in `order` and puts the last one as a variant computed behind the others.
  // Returns the KV it stored.
  std::vector<float> PutVariant(std::span<const int> order, v1::ReuseMetadata* meta_out = nullptr) {
    const std::vector<int> tokens = Prompt(order);
    const int begin = 1 + int(order.size() - 1) * kLen;
    std::vector<refmodel::ChunkSpan> spans;
    for (size_t i = 0; i < order.size(); ++i) spans.push_back({1 + int(i) * kLen, 1 + int(i + 1) * kLen});
    Session s(*model_);
    auto stats = refmodel::PrefillWithAttentionStats(s, tokens, spans);
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    std::vector<float> kv(size_t(kLen) * s.KvFloatsPerToken());
    EXPECT_TRUE(s.ExportKv(begin, begin + kLen, KeyForm::kPostRope, kv).ok());
    const refmodel::ChunkAttention& a = stats->back();
    v1::ReuseMetadata meta;
    const ChunkKey content = keys_[order.back()];
    meta.set_content_key(content.ToBytes().data(), ChunkKey::kBytes);
    std::vector<ChunkKey> context;
    for (size_t i = 0; i + 1 < order.size(); ++i) {
      context.push_back(keys_[order[i]]);
      meta.add_context_keys(keys_[order[i]].ToBytes().data(), ChunkKey::kBytes);
    }
    for (float w : a.context_attention) meta.add_context_attention(w);
    meta.set_context_impact(a.context_impact);
    for (float x : a.layer_context_impact) meta.add_layer_context_impact(x);
    for (float x : a.token_context_attention) meta.add_token_context_attention(x);
    PutOptions po;
    po.base_position = uint32_t(begin);
    po.reuse = &meta;
    auto put = reuse_client_->Put(VariantKey(content, context), U32(passages_[order.back()]),
                                  std::as_bytes(std::span<const float>(kv)), po);
    EXPECT_TRUE(put.ok()) << put.status().ToString();
    if (meta_out != nullptr) *meta_out = meta;
    return kv;
  }

  // Log-softmax of the next token after `tokens`, prefilled in full.
  std::vector<float> FullNext(const std::vector<int>& tokens) {
    Session s(*model_);
    auto logits = s.ForwardMany(tokens);
    EXPECT_TRUE(logits.ok());
    std::vector<float> out(size_t(model_->config().vocab_size));
    refmodel::LogSoftmax(s.logits(), out);
    return out;
  }

  std::unique_ptr<refmodel::Model> model_;
  std::vector<std::vector<int>> passages_;
  std::vector<ChunkKey> keys_;
  ModelFingerprint fp_;
  std::unique_ptr<Client> reuse_client_;
};

TEST_F(BlendIntegrationTest, ServerReturnsTheVariantComputedBehindTheBestMatchingContext) {
  // Passage 2 alone, behind [0], behind [1, 0].
  const std::vector<float> alone = PutVariant(std::vector<int>{2});
  v1::ReuseMetadata behind0_meta;
  const std::vector<float> behind0 = PutVariant(std::vector<int>{0, 2}, &behind0_meta);
  v1::ReuseMetadata behind10_meta;
  const std::vector<float> behind10 = PutVariant(std::vector<int>{1, 0, 2}, &behind10_meta);
  ASSERT_NE(alone, behind0);  // context changes the KV: the variants differ

  std::vector<float> dest(alone.size());
  std::vector<std::span<std::byte>> dests = {std::as_writable_bytes(std::span<float>(dest))};
  auto expect_choice = [&](std::vector<ChunkKey> prompt, const std::vector<ChunkKey>& context,
                           const std::vector<float>& kv, double match) {
    auto got = reuse_client_->GetBestVariants(std::span<const ChunkKey>(&keys_[2], 1), prompt, dests);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE((*got)[0].chunk.found);
    EXPECT_EQ((*got)[0].variant_key, VariantKey(keys_[2], context));
    EXPECT_EQ(dest, kv);
    EXPECT_NEAR((*got)[0].context_match, match, 1e-6);
  };
  expect_choice({keys_[2]}, {}, alone, 1.0);                             // first in the prompt: alone
  expect_choice({keys_[0], keys_[2]}, {keys_[0]}, behind0, 1.0);         // the same context
  expect_choice({keys_[1], keys_[0], keys_[2]}, {keys_[1], keys_[0]}, behind10, 1.0);
  // Behind [0, 1]: both context variants keep their chunks; [1, 0] flipped its only pair (score 0), [0] kept.
  expect_choice({keys_[0], keys_[1], keys_[2]}, {keys_[0]}, behind0, 1.0);

  // The metadata comes back as it was put.
  auto got = reuse_client_->GetBestVariants(std::span<const ChunkKey>(&keys_[2], 1),
                                            std::vector<ChunkKey>{keys_[0], keys_[2]}, dests);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0].reuse.SerializeAsString(), behind0_meta.SerializeAsString());
  EXPECT_EQ((*got)[0].chunk.base_position, uint32_t(1 + kLen));

  // Every answer carries the group's means over its variants computed behind a context, so the alone
  // variant's tokens can be ranked.
  got = reuse_client_->GetBestVariants(std::span<const ChunkKey>(&keys_[2], 1), std::vector<ChunkKey>{keys_[2]}, dests);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0].variant_key, VariantKey(keys_[2], {}));
  ASSERT_EQ((*got)[0].group_token_context_attention.size(), size_t(kLen));
  for (int t = 0; t < kLen; ++t) {
    const float mean = (behind0_meta.token_context_attention(t) + behind10_meta.token_context_attention(t)) / 2;
    EXPECT_FLOAT_EQ((*got)[0].group_token_context_attention[size_t(t)], mean) << "token " << t;
  }
  EXPECT_FLOAT_EQ(float((*got)[0].group_context_impact),
                  (behind0_meta.context_impact() + behind10_meta.context_impact()) / 2);
}

TEST_F(BlendIntegrationTest, FetchedVariantBlendedIntoANewPromptApproachesFullPrefill) {
  PutVariant(std::vector<int>{0});      // passage 0 alone: an exact prefix at position 1
  PutVariant(std::vector<int>{2});      // passage 2 alone
  PutVariant(std::vector<int>{1, 2});   // passage 2 behind [1]
  // New prompt BOS + 0 + 2: the server has no variant of 2 behind [0]; it returns the alone one (the
  // [1] variant has nothing in common either, and ties prefer fewer context chunks).
  const std::vector<int> order = {0, 2};
  const std::vector<int> tokens = Prompt(order);
  const int n = int(tokens.size());
  const std::vector<float> reference = FullNext(tokens);

  const size_t floats = size_t(kLen) * Session(*model_).KvFloatsPerToken();
  std::vector<std::vector<float>> chunks(2, std::vector<float>(floats));
  std::vector<std::span<std::byte>> dests;
  for (auto& c : chunks) dests.push_back(std::as_writable_bytes(std::span<float>(c)));
  auto got = reuse_client_->GetBestVariants(std::vector<ChunkKey>{keys_[0], keys_[2]},
                                            std::vector<ChunkKey>{keys_[0], keys_[2]}, dests);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE((*got)[0].chunk.found && (*got)[1].chunk.found);
  EXPECT_EQ((*got)[1].variant_key, VariantKey(keys_[2], {}));
  EXPECT_DOUBLE_EQ((*got)[1].context_match, 0.0);

  // Assemble the cached KV of positions [0, n): BOS computed, each chunk re-rotated to its new place.
  const int row = model_->config().kv_dim(), layers = model_->config().n_layers;
  std::vector<float> cached(size_t(n) * floats / kLen, 0.0f);
  std::vector<uint8_t> has_cached(size_t(n), 1);
  has_cached[0] = 0;
  for (int i = 0; i < 2; ++i) {
    const int begin = 1 + i * kLen;
    ASSERT_TRUE(RerotateKeys(fp_, kLen, begin - int((*got)[i].chunk.base_position),
                             std::as_writable_bytes(std::span<float>(chunks[i]))).ok());
    for (int b = 0; b < layers * 2; ++b) {
      std::copy_n(chunks[i].data() + size_t(b) * kLen * row, size_t(kLen) * row,
                  cached.data() + (size_t(b) * n + size_t(begin)) * row);
    }
  }
  auto next_after = [&](const refmodel::BlendOptions& options, refmodel::BlendStats* stats) {
    Session s(*model_);
    auto st = refmodel::BlendPrefill(s, tokens, cached, has_cached, options);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    if (stats != nullptr) *stats = *st;
    std::vector<float> out(size_t(model_->config().vocab_size));
    refmodel::LogSoftmax(s.logits(), out);
    return out;
  };
  // The last position must be active to yield logits: recompute it in every variant of the test.
  has_cached[size_t(n - 1)] = 0;
  const double naive_kl = refmodel::KlDivergence(reference, next_after({}, nullptr));
  EXPECT_GT(naive_kl, 1e-4) << "passage 2 computed alone should not match its prefill behind passage 0";

  // CacheBlend, V deviation at layer 1, 30%.
  CacheBlendOptions cb;
  cb.ratios = {0.3};
  ASSERT_TRUE(cb.Validate(uint32_t(layers)).ok());
  refmodel::BlendOptions blend;
  blend.check_layers = {1};
  blend.select = [&](const refmodel::CheckLayerView& v) {
    std::vector<float> dev(v.positions.size());
    EXPECT_TRUE(SquaredDeviation(v.fresh_value, v.cached_value, size_t(v.kv_dim), dev).ok());
    auto kept = SelectByDeviation(cb, size_t(v.check_index), v.positions, dev, v.must_recompute, 2 * kLen - 1);
    EXPECT_TRUE(kept.ok());
    return *kept;
  };
  refmodel::BlendStats stats;
  const double blend_kl = refmodel::KlDivergence(reference, next_after(blend, &stats));
  EXPECT_LT(blend_kl, naive_kl);
  EXPECT_LT(stats.flops, stats.flops_full);

  // Cache-Craft from the fetched metadata: an alone variant with match 0 and an assumed CI of 1 at alpha 1
  // recomputes the whole of passage 2; passage 0 (exact, match 1) nothing. That is full prefill.
  CacheCraftOptions cc;
  cc.default_context_impact = 1.0;
  refmodel::BlendOptions craft;
  for (int i = 0; i < 2; ++i) {
    const auto& v = (*got)[i];
    VariantReuse in;
    in.num_tokens = kLen;
    in.computed_alone = v.reuse.context_keys_size() == 0;
    in.context_impact = v.reuse.context_impact();
    in.context_match = v.context_match;
    auto plan = PlanRecompute(cc, in);
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan->tokens.size(), i == 0 ? 0u : size_t(kLen));
    for (uint32_t t : plan->tokens) craft.selected.push_back(1 + i * kLen + int(t));
  }
  EXPECT_LT(refmodel::KlDivergence(reference, next_after(craft, nullptr)), 1e-6);
}

}  // namespace
}  // namespace kvtier::testing
