#include "kvtier/kvstore/variant_index.h"

#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <vector>

namespace kvtier {
namespace {

const ChunkKey kChunk{0, 100}, kA{0, 1}, kB{0, 2}, kC{0, 3}, kD{0, 4};

std::shared_ptr<const VariantMeta> Meta(std::vector<ChunkKey> context, std::vector<float> weights = {},
                                        ChunkKey content = kChunk) {
  auto m = std::make_shared<VariantMeta>();
  m->content_key = content;
  m->context = std::move(context);
  m->context_attention = std::move(weights);
  return m;
}

VariantCandidate Candidate(ChunkKey key, std::shared_ptr<const VariantMeta> meta, uint64_t seq) {
  return {key, std::move(meta), seq, {}};
}

// The chosen variant key for `new_context` among `candidates`, and its score.
std::pair<ChunkKey, double> Best(std::vector<VariantCandidate> candidates, std::vector<ChunkKey> new_context) {
  RankVariants(new_context, &candidates);
  return {candidates.front().variant_key, candidates.front().match.score};
}

const ChunkKey kAlone{1, 0}, kBehindAB{2, 0}, kBehindC{3, 0}, kBehindABC{4, 0};

std::vector<VariantCandidate> ThreeVariants() {
  return {Candidate(kAlone, Meta({}), 1), Candidate(kBehindAB, Meta({kA, kB}, {0.75f, 0.25f}), 2),
          Candidate(kBehindC, Meta({kC}), 3)};
}

TEST(RankVariantsTest, PicksTheVariantWhoseContextMatchesBest) {
  // Empty new context: only the variant computed alone matches (score 1).
  EXPECT_EQ(Best(ThreeVariants(), {}), std::make_pair(kAlone, 1.0));
  EXPECT_EQ(Best(ThreeVariants(), {kA, kB}), std::make_pair(kBehindAB, 1.0));
  // A keeps 0.75 of [A,B]'s attention; C keeps all of [C]'s.
  EXPECT_EQ(Best(ThreeVariants(), {kA, kC}), std::make_pair(kBehindC, 1.0));
  EXPECT_EQ(Best(ThreeVariants(), {kA, kD}), std::make_pair(kBehindAB, 0.75));
  EXPECT_EQ(Best(ThreeVariants(), {kD, kB}), std::make_pair(kBehindAB, 0.25));
}

TEST(RankVariantsTest, AttentionWeightsDecideBetweenPartialMatches) {
  // [A,B] with A weighted 0.2 against [B,C] with B weighted 0.9; the new context keeps A and B (and D).
  std::vector<VariantCandidate> c = {Candidate(kBehindAB, Meta({kA, kB}, {0.8f, 0.2f}), 1),
                                     Candidate(kBehindC, Meta({kB, kC}, {0.9f, 0.1f}), 2)};
  // Old [A,B]: both present, in order: 1.0. Old [B,C]: B present = 0.9.
  EXPECT_EQ(Best(c, {kA, kB, kD}), std::make_pair(kBehindAB, 1.0));
  // Only B present: [A,B] keeps 0.2, [B,C] keeps 0.9.
  EXPECT_EQ(Best(c, {kD, kB}).first, kBehindC);
  EXPECT_NEAR(Best(c, {kD, kB}).second, 0.9, 1e-6);
  // Only A present: [A,B] keeps 0.8.
  EXPECT_NEAR(Best(c, {kA}).second, 0.8, 1e-6);
}

TEST(RankVariantsTest, OrderFlipsArePenalisedPerPair) {
  // [B,A]: both present, their one pair flipped: 1 x (1 - 1) = 0; every variant scores 0 and the
  // one with the fewest context chunks (alone) wins the tie.
  EXPECT_EQ(Best(ThreeVariants(), {kB, kA}), std::make_pair(kAlone, 0.0));
  // [A,B,C] against the new order C,A,B: of its 3 pairs, (A,C) and (B,C) flipped: 1 x (1 - 2/3).
  std::vector<VariantCandidate> c = {Candidate(kBehindABC, Meta({kA, kB, kC}), 1),
                                     Candidate(kBehindAB, Meta({kA, kB}, {0.5f, 0.5f}), 2)};
  std::vector<VariantCandidate> ranked = c;
  RankVariants(std::vector<ChunkKey>{kC, kA, kB}, &ranked);
  EXPECT_EQ(ranked[0].variant_key, kBehindAB);  // [A,B] kept in order: 1.0
  EXPECT_NEAR(ranked[1].match.score, 1.0 / 3.0, 1e-9);
  EXPECT_NEAR(ranked[1].match.order_penalty, 2.0 / 3.0, 1e-9);
}

TEST(RankVariantsTest, TiesGoToFewerContextChunksThenTheLatestPut) {
  // Equal scores (0), different context sizes: fewer chunks wins even when put earlier.
  std::vector<VariantCandidate> c = {Candidate(kBehindC, Meta({kC}), 1), Candidate(kBehindAB, Meta({kA, kB}), 2)};
  EXPECT_EQ(Best(c, {kD}).first, kBehindC);
  // Equal scores and sizes: the most recently put wins, whatever the input order.
  const ChunkKey older{5, 0}, newer{6, 0};
  std::vector<VariantCandidate> same = {Candidate(newer, Meta({kA}), 9), Candidate(older, Meta({kB}), 3)};
  EXPECT_EQ(Best(same, {kA, kB}).first, newer);
  std::swap(same[0], same[1]);
  EXPECT_EQ(Best(same, {kA, kB}).first, newer);
}

TEST(RankVariantsTest, EqualScoresPreferTheVariantThatSawMoreOfTheNewContext) {
  // Behind [A,B,D] both [A] and [A,B] keep all they saw in order (score 1); [A,B] saw more of it, so its KV
  // carries more of the new context's effect, although [A] has fewer context chunks and is newer.
  std::vector<VariantCandidate> c = {Candidate(kBehindAB, Meta({kA, kB}), 1), Candidate(kBehindC, Meta({kA}), 2)};
  EXPECT_EQ(Best(c, {kA, kB, kD}), std::make_pair(kBehindAB, 1.0));
  // With nothing in common (score 0) presence does not count: fewer context chunks wins.
  std::vector<VariantCandidate> none = {Candidate(kBehindAB, Meta({kB, kA}), 1), Candidate(kAlone, Meta({}), 2)};
  EXPECT_EQ(Best(none, {kA, kB}).first, kAlone);
}

TEST(GroupHintTest, AveragesTheVariantsComputedBehindAContext) {
  auto with_scores = [](std::vector<ChunkKey> context, std::vector<float> tokens, float impact) {
    auto m = std::make_shared<VariantMeta>();
    m->context = std::move(context);
    m->token_context_attention = std::move(tokens);
    m->context_impact = impact;
    return std::shared_ptr<const VariantMeta>(m);
  };
  std::vector<VariantCandidate> c = {
      Candidate(kAlone, with_scores({}, {0.9f, 0.9f, 0.9f}, 0.9f), 1),    // alone: measured nothing, skipped
      Candidate(kBehindAB, with_scores({kA, kB}, {0.2f, 0.4f, 0.0f}, 0.2f), 2),
      Candidate(kBehindC, with_scores({kC}, {0.4f, 0.0f, 0.6f}, 0.4f), 3),
      Candidate(kBehindABC, with_scores({kA}, {1.0f, 1.0f}, 1.0f), 4)};  // wrong length, skipped
  const GroupContextHint hint = GroupHint(c, 3);
  EXPECT_EQ(hint.variants, 2u);
  ASSERT_EQ(hint.token_context_attention.size(), 3u);
  EXPECT_FLOAT_EQ(hint.token_context_attention[0], 0.3f);
  EXPECT_FLOAT_EQ(hint.token_context_attention[1], 0.2f);
  EXPECT_FLOAT_EQ(hint.token_context_attention[2], 0.3f);
  EXPECT_FLOAT_EQ(hint.context_impact, 0.3f);
  EXPECT_TRUE(GroupHint(std::span<const VariantCandidate>(c).first(1), 3).token_context_attention.empty());
}

TEST(VariantIndexTest, ReplaceLeastRecentEvictsTheVariantChosenLongestAgo) {
  VariantIndex index(2, VariantAdmission::kReplaceLeastRecent);
  const ChunkKey v1{1, 1}, v2{1, 2}, v3{1, 3}, v4{1, 4};
  EXPECT_TRUE(index.Add(1, 7, v1, Meta({kA}), 10).admitted);
  EXPECT_TRUE(index.Add(1, 7, v2, Meta({kB}), 20).admitted);
  index.MarkChosen(1, v1, 30);  // v1 chosen at 30; v2 never chosen counts as its put time 20
  auto added = index.Add(1, 7, v3, Meta({kC}), 40);
  EXPECT_TRUE(added.admitted);
  ASSERT_TRUE(added.replaced.has_value());
  EXPECT_EQ(*added.replaced, v2);
  EXPECT_EQ(index.Find(1, v2), nullptr);
  // Now v1 (30) is older than v3 (put at 40).
  added = index.Add(1, 7, v4, Meta({kD}), 50);
  ASSERT_TRUE(added.replaced.has_value());
  EXPECT_EQ(*added.replaced, v1);
  EXPECT_EQ(index.variants(), 2u);
  EXPECT_EQ(index.Candidates(1, kChunk).size(), 2u);
}

TEST(VariantIndexTest, EqualRecencyReplacesTheEarlierPut) {
  VariantIndex index(2, VariantAdmission::kReplaceLeastRecent);
  const ChunkKey v1{1, 1}, v2{1, 2}, v3{1, 3};
  index.Add(1, 7, v1, Meta({kA}), 10);
  index.Add(1, 7, v2, Meta({kB}), 10);
  auto added = index.Add(1, 7, v3, Meta({kC}), 10);
  ASSERT_TRUE(added.replaced.has_value());
  EXPECT_EQ(*added.replaced, v1);
}

TEST(VariantIndexTest, KeepExistingRefusesNewVariantsOfAFullGroup) {
  VariantIndex index(2, VariantAdmission::kKeepExisting);
  const ChunkKey v1{1, 1}, v2{1, 2}, v3{1, 3};
  EXPECT_TRUE(index.Add(1, 7, v1, Meta({kA}), 10).admitted);
  EXPECT_TRUE(index.Add(1, 7, v2, Meta({kB}), 20).admitted);
  EXPECT_FALSE(index.WouldAdmit(1, kChunk, v3));
  EXPECT_TRUE(index.WouldAdmit(1, kChunk, v1));  // already indexed: a no-op, not a refusal
  auto added = index.Add(1, 7, v3, Meta({kC}), 30);
  EXPECT_FALSE(added.admitted);
  EXPECT_FALSE(added.replaced.has_value());
  EXPECT_EQ(index.Find(1, v3), nullptr);
  EXPECT_TRUE(index.Add(1, 7, v1, Meta({kA}), 40).already_indexed);
  // Room again once a variant leaves.
  EXPECT_TRUE(index.Remove(1, v1));
  EXPECT_FALSE(index.Remove(1, v1));
  EXPECT_TRUE(index.WouldAdmit(1, kChunk, v3));
  EXPECT_TRUE(index.Add(1, 7, v3, Meta({kC}), 50).admitted);
}

TEST(VariantIndexTest, RestoredVariantsKeepTheirPutSequenceAndRankBeforeNewPuts) {
  VariantIndex index(2, VariantAdmission::kReplaceLeastRecent);
  const ChunkKey v1{1, 1}, v2{1, 2}, v3{1, 3}, v4{1, 4};
  // Restored newest first, as the Store does.
  EXPECT_TRUE(index.Restore(1, 7, v2, Meta({kB}), 41));
  EXPECT_TRUE(index.Restore(1, 7, v1, Meta({kA}), 17));
  EXPECT_FALSE(index.Restore(1, 7, v3, Meta({kC}), 9));   // the group is full
  EXPECT_FALSE(index.Restore(1, 7, v1, Meta({kA}), 17));  // already indexed
  EXPECT_FALSE(index.Restore(2, 8, v3, Meta({kC}), 5) && index.Restore(2, 9, v4, Meta({kD}), 4));  // other fingerprint
  EXPECT_EQ(index.Find(2, v4), nullptr);
  auto candidates = index.Candidates(1, kChunk);
  ASSERT_EQ(candidates.size(), 2u);
  EXPECT_EQ(candidates[0].put_seq, 41u);
  EXPECT_EQ(candidates[1].put_seq, 17u);
  // A new put continues above the highest restored sequence and, even at time 0, replaces the older restored one.
  auto added = index.Add(1, 7, v3, Meta({kC}), 0);
  EXPECT_EQ(added.put_seq, 42u);
  ASSERT_TRUE(added.replaced.has_value());
  EXPECT_EQ(*added.replaced, v1);
}

TEST(VariantIndexTest, GroupsAreSeparateByNamespaceAndContentKey) {
  VariantIndex index(4, VariantAdmission::kReplaceLeastRecent);
  const ChunkKey v1{1, 1}, other_chunk{0, 200};
  index.Add(1, 7, v1, Meta({kA}), 10);
  index.Add(2, 8, v1, Meta({kA}), 10);
  index.Add(1, 7, ChunkKey{1, 9}, Meta({}, {}, other_chunk), 10);
  EXPECT_EQ(index.Candidates(1, kChunk).size(), 1u);
  EXPECT_EQ(index.Candidates(2, kChunk).size(), 1u);
  EXPECT_EQ(index.Candidates(3, kChunk).size(), 0u);
  EXPECT_EQ(index.GroupFingerprint(1, kChunk), 7u);
  EXPECT_EQ(index.GroupFingerprint(2, kChunk), 8u);
  EXPECT_FALSE(index.GroupFingerprint(3, kChunk).has_value());
  EXPECT_EQ(index.RemoveGroup(1, kChunk), std::vector<ChunkKey>{v1});
  EXPECT_EQ(index.Candidates(1, kChunk).size(), 0u);
  EXPECT_NE(index.Find(2, v1), nullptr);
  EXPECT_EQ(index.groups(), 2u);  // (2, kChunk) and (1, other_chunk)
}

TEST(VariantMetaTest, ValidateNamesTheBadField) {
  VariantMeta m;
  m.context = {kA, kB};
  EXPECT_TRUE(m.Validate(2, 4).ok());
  m.context_attention = {0.5f};
  EXPECT_NE(m.Validate(2, 4).message().find("context_attention has 1 values for 2 context keys"), std::string::npos);
  m.context_attention = {0.5f, -1.0f};
  EXPECT_NE(m.Validate(2, 4).message().find("context_attention[1]"), std::string::npos);
  m.context_attention = {3.0f, 1.0f};  // weights need not be shares
  EXPECT_TRUE(m.Validate(2, 4).ok());
  m.context_impact = 1.5f;
  EXPECT_NE(m.Validate(2, 4).message().find("context_impact"), std::string::npos);
  m.context_impact = 0.5f;
  m.layer_context_impact = {0.1f, 0.2f, 0.3f};
  EXPECT_NE(m.Validate(2, 4).message().find("layer_context_impact has 3 values for 2 layers"), std::string::npos);
  m.layer_context_impact = {0.1f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_NE(m.Validate(2, 4).message().find("layer_context_impact[1]"), std::string::npos);
  m.layer_context_impact = {};
  m.token_context_attention = {0.1f};
  EXPECT_NE(m.Validate(2, 4).message().find("token_context_attention has 1 values for 4 tokens"), std::string::npos);
  m.token_context_attention = {};
  m.context.assign(VariantMeta::kMaxContext + 1, kA);
  m.context_attention = {};
  EXPECT_EQ(m.Validate(2, 4).code(), StatusCode::kInvalidArgument);
}

TEST(VariantOptionsTest, Bounds) {
  VariantOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.max_variants = 0;
  EXPECT_FALSE(o.Validate().ok());
  o.max_variants = 65;
  EXPECT_FALSE(o.Validate().ok());
  o.max_variants = 64;
  o.admission = "keep-newest";
  EXPECT_NE(o.Validate().message().find("reuse.admission"), std::string::npos);
  o.admission = "keep-existing";
  EXPECT_TRUE(o.Validate().ok());
  EXPECT_EQ(o.admission_policy(), VariantAdmission::kKeepExisting);
}

}  // namespace
}  // namespace kvtier
