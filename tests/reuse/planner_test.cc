// Cache-Craft planning (client/include/kvtier/client/cachecraft.h) on hand-computed cases.
#include "kvtier/client/cachecraft.h"

#include <gtest/gtest.h>

#include <vector>

namespace kvtier {
namespace {

TEST(PlanRecompute, CountFollowsTheFormulaAndPicksTheMostContextBoundTokens) {
  CacheCraftOptions options;
  options.alpha = 2.0;
  const std::vector<float> scores = {0.1f, 0.9f, 0.3f, 0.8f, 0.0f, 0.5f, 0.2f, 0.7f, 0.4f, 0.6f};
  VariantReuse v;
  v.num_tokens = 10;
  v.context_impact = 0.4;
  v.token_context_attention = scores;
  v.context_match = 0.5;
  // 2 x 0.4 x (1 - 0.5) x 10 = 4 tokens: the scores 0.9, 0.8, 0.7, 0.6 at 1, 3, 7, 9.
  auto plan = PlanRecompute(options, v);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_DOUBLE_EQ(plan->context_impact, 0.4);
  EXPECT_EQ(plan->tokens, (std::vector<uint32_t>{1, 3, 7, 9}));
}

TEST(PlanRecompute, RoundsUpAndCapsAtTheChunk) {
  CacheCraftOptions options;
  VariantReuse v;
  v.num_tokens = 10;
  v.context_impact = 0.25;
  v.context_match = 0.0;
  // 1 x 0.25 x 1 x 10 = 2.5 -> 3; no scores: the first tokens.
  auto plan = PlanRecompute(options, v);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->tokens, (std::vector<uint32_t>{0, 1, 2}));
  options.alpha = 100;
  plan = PlanRecompute(options, v);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->tokens.size(), 10u);
}

TEST(PlanRecompute, AFullMatchRecomputesNothing) {
  VariantReuse v;
  v.num_tokens = 32;
  v.context_impact = 0.9;
  v.context_match = 1.0;
  auto plan = PlanRecompute(CacheCraftOptions{}, v);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->tokens.empty());
}

TEST(PlanRecompute, AloneVariantsUseTheDefaultImpact) {
  CacheCraftOptions options;
  options.default_context_impact = 0.5;
  VariantReuse v;
  v.num_tokens = 8;
  v.computed_alone = true;
  v.context_impact = 0.0;  // measured against no context: not informative
  v.context_match = 0.0;
  auto plan = PlanRecompute(options, v);
  ASSERT_TRUE(plan.ok());
  EXPECT_DOUBLE_EQ(plan->context_impact, 0.5);
  EXPECT_EQ(plan->tokens, (std::vector<uint32_t>{0, 1, 2, 3}));
}

TEST(PlanRecompute, AloneVariantsRankTokensByTheGroupsScores) {
  const std::vector<float> own(6, 0.0f);  // computed alone: no context attention measured
  const std::vector<float> group = {0.1f, 0.6f, 0.2f, 0.5f, 0.0f, 0.3f};
  VariantReuse v;
  v.num_tokens = 6;
  v.computed_alone = true;
  v.token_context_attention = own;
  v.fallback_token_scores = group;
  CacheCraftOptions options;
  options.default_context_impact = 0.5;
  // 1 x 0.5 x (1 - 0) x 6 = 3 tokens: the group's top three, 1, 3 and 5.
  auto plan = PlanRecompute(options, v);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->tokens, (std::vector<uint32_t>{1, 3, 5}));
  // A variant's own scores win over the fallback.
  const std::vector<float> mine = {0.9f, 0.0f, 0.8f, 0.0f, 0.7f, 0.0f};
  v.token_context_attention = mine;
  plan = PlanRecompute(options, v);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->tokens, (std::vector<uint32_t>{0, 2, 4}));
  const std::vector<float> short_group = {1, 2};
  v.fallback_token_scores = short_group;
  EXPECT_EQ(PlanRecompute(options, v).status().code(), StatusCode::kInvalidArgument);
}

TEST(PlanRecompute, TiesGoToTheEarlierToken) {
  const std::vector<float> scores = {0.5f, 0.7f, 0.7f, 0.7f};
  VariantReuse v;
  v.num_tokens = 4;
  v.context_impact = 0.5;
  v.context_match = 0.0;
  v.token_context_attention = scores;
  auto plan = PlanRecompute(CacheCraftOptions{}, v);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->tokens, (std::vector<uint32_t>{1, 2}));
}

TEST(PlanRecompute, RejectsBadInput) {
  auto expect_invalid = [](const CacheCraftOptions& o, const VariantReuse& v, const std::string& text) {
    auto plan = PlanRecompute(o, v);
    ASSERT_FALSE(plan.ok()) << text;
    EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(plan.status().message().find(text), std::string::npos) << plan.status().message();
  };
  VariantReuse v;
  v.num_tokens = 4;
  CacheCraftOptions o;
  o.alpha = 0;
  expect_invalid(o, v, "alpha must be > 0");
  o = {};
  o.default_context_impact = 1.5;
  expect_invalid(o, v, "default_context_impact");
  VariantReuse bad = v;
  bad.context_match = 1.2;
  expect_invalid({}, bad, "context match outside [0, 1]");
  bad = v;
  bad.context_impact = -0.1;
  expect_invalid({}, bad, "context impact outside [0, 1]");
  const std::vector<float> three = {1, 2, 3};
  bad = v;
  bad.token_context_attention = three;
  expect_invalid({}, bad, "3 scores for 4 tokens");
}

}  // namespace
}  // namespace kvtier
