// CacheBlend selection (client/include/kvtier/client/blend.h) on hand-computed cases.
#include "kvtier/client/blend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace kvtier {
namespace {

TEST(SquaredDeviation, SumsSquaredDifferencesPerRow) {
  const std::vector<float> fresh = {1, 2, 3, 0, 0, 0};
  const std::vector<float> cached = {1, 0, 0, 1, 1, 1};
  std::vector<float> out(2);
  ASSERT_TRUE(SquaredDeviation(fresh, cached, 3, out).ok());
  EXPECT_FLOAT_EQ(out[0], 0 + 4 + 9);
  EXPECT_FLOAT_EQ(out[1], 3);
  std::vector<float> three(3);
  const Status s = SquaredDeviation(fresh, cached, 3, three);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("needs 9 floats"), std::string::npos) << s.message();
}

TEST(SelectByDeviation, KeepsTheLargestDeviationsAndEveryNewToken) {
  CacheBlendOptions options;
  options.ratios = {0.25};
  // 8 reusable tokens at positions 1..8, plus a new token at 9: ceil(0.25 x 8) = 2 reusable kept.
  const std::vector<int> positions = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<float> dev = {0.1f, 5.0f, 0.2f, 0.3f, 7.0f, 0.0f, 4.9f, 0.4f, 0.0f};
  const std::vector<uint8_t> must = {0, 0, 0, 0, 0, 0, 0, 0, 1};
  auto kept = SelectByDeviation(options, 0, positions, dev, must, 8);
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_EQ(*kept, (std::vector<int>{2, 5, 9}));
}

TEST(SelectByDeviation, RoundsTheBudgetUpAndBreaksTiesByPosition) {
  CacheBlendOptions options;
  options.ratios = {0.15};
  // ceil(0.15 x 10) = 2; positions 3, 4 and 7 tie at the top: the earlier two win.
  const std::vector<int> positions = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<float> dev = {1, 1, 1, 9, 9, 1, 1, 9, 1, 1};
  const std::vector<uint8_t> must(10, 0);
  auto kept = SelectByDeviation(options, 0, positions, dev, must, 10);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, (std::vector<int>{3, 4}));
}

TEST(SelectByDeviation, GradualFilteringBudgetsAgainstAllReusableTokens) {
  CacheBlendOptions options;
  options.check_layers = {1, 2};
  options.ratios = {0.5, 0.2};
  // Second check: 4 candidates survived the first, but the budget is ceil(0.2 x 10) = 2 of all 10.
  const std::vector<int> positions = {2, 4, 6, 8};
  const std::vector<float> dev = {3, 1, 4, 2};
  const std::vector<uint8_t> must(4, 0);
  auto kept = SelectByDeviation(options, 1, positions, dev, must, 10);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, (std::vector<int>{2, 6}));
}

TEST(SelectByDeviation, NanDeviationIsSelectedFirst) {
  CacheBlendOptions options;
  options.ratios = {0.5};
  const std::vector<int> positions = {0, 1};
  const std::vector<float> dev = {100.0f, std::nanf("")};
  const std::vector<uint8_t> must(2, 0);
  auto kept = SelectByDeviation(options, 0, positions, dev, must, 2);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, (std::vector<int>{1}));
}

TEST(SelectByDeviation, FewerCandidatesThanBudgetKeepsThemAll) {
  CacheBlendOptions options;
  options.ratios = {1.0};
  const std::vector<int> positions = {3, 5};
  const std::vector<float> dev = {0, 0};
  const std::vector<uint8_t> must = {0, 1};
  auto kept = SelectByDeviation(options, 0, positions, dev, must, 4);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, (std::vector<int>{3, 5}));
}

TEST(SelectByDeviation, RejectsMismatchedInputs) {
  CacheBlendOptions options;
  const std::vector<int> positions = {1, 2};
  const std::vector<float> dev = {1};
  const std::vector<uint8_t> must(2, 0);
  auto bad = SelectByDeviation(options, 0, positions, dev, must, 2);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("2 positions but 1 deviations"), std::string::npos);
  const std::vector<float> dev2 = {1, 2};
  auto no_ratio = SelectByDeviation(options, 1, positions, dev2, must, 2);
  EXPECT_EQ(no_ratio.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_ratio.status().message().find("check index 1 has no ratio"), std::string::npos);
}

TEST(CacheBlendOptions, ValidateNamesTheProblem) {
  CacheBlendOptions ok;
  EXPECT_TRUE(ok.Validate(5).ok());
  auto expect_invalid = [](const CacheBlendOptions& o, const std::string& text) {
    const Status s = o.Validate(5);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.message().find(text), std::string::npos) << s.message();
  };
  CacheBlendOptions o = ok;
  o.check_layers = {5};
  expect_invalid(o, "check layer 5 outside [0, 5)");
  o = ok;
  o.check_layers = {2, 1};
  o.ratios = {0.3, 0.2};
  expect_invalid(o, "ascending");
  o = ok;
  o.check_layers = {1, 2};
  o.ratios = {0.1, 0.2};
  expect_invalid(o, "must not grow");
  o = ok;
  o.ratios = {0.0};
  expect_invalid(o, "outside (0, 1]");
  o = ok;
  o.ratios = {0.1, 0.1};
  expect_invalid(o, "1 check layers but 2 ratios");
  o = ok;
  o.check_layers.clear();
  o.ratios.clear();
  expect_invalid(o, "at least one check layer");
}

}  // namespace
}  // namespace kvtier
