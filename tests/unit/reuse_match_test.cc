// Variant keys and context matching (kvtier/api/reuse.h): the server picks variants and the client plans
// recomputation with these, so the numbers below are worked out by hand from the definitions.
#include "kvtier/api/reuse.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <string>
#include <vector>

namespace kvtier {
namespace {

ChunkKey K(uint64_t n) { return ChunkKey{n, n * 7 + 1}; }

TEST(VariantKey, HashesTheBytesDocsKeysMdSpecifies) {
  const ChunkKey content{0x0102030405060708ull, 0x1112131415161718ull};
  const std::vector<ChunkKey> context = {ChunkKey{0xa1, 0xa2}, ChunkKey{0xb1, 0xb2}};
  std::string bytes = "kvtier.variant.v1";
  auto append_key = [&](const ChunkKey& k) {
    const ChunkKey::Bytes b = k.ToBytes();
    bytes.append(reinterpret_cast<const char*>(b.data()), b.size());
  };
  append_key(content);
  bytes.append("\x02\x00\x00\x00", 4);
  for (const ChunkKey& k : context) append_key(k);
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  EXPECT_EQ(VariantKey(content, context), (ChunkKey{h.high64, h.low64}));
}

TEST(VariantKey, DependsOnContextAndItsOrder) {
  const ChunkKey c = K(1);
  const std::vector<ChunkKey> ab = {K(2), K(3)}, ba = {K(3), K(2)};
  EXPECT_NE(VariantKey(c, {}), VariantKey(c, ab));
  EXPECT_NE(VariantKey(c, ab), VariantKey(c, ba));
  EXPECT_EQ(VariantKey(c, ab), VariantKey(c, std::vector<ChunkKey>{K(2), K(3)}));
  EXPECT_NE(VariantKey(c, {}), c);
}

TEST(MatchContext, AloneMatchesOnlyAnEmptyContext) {
  const std::vector<ChunkKey> none, some = {K(5)};
  EXPECT_DOUBLE_EQ(MatchContext(none, {}, none).score, 1.0);
  const ContextMatch m = MatchContext(none, {}, some);
  EXPECT_DOUBLE_EQ(m.overlap, 0.0);
  EXPECT_DOUBLE_EQ(m.score, 0.0);
  EXPECT_DOUBLE_EQ(MatchContext(some, {}, none).score, 0.0);
}

TEST(MatchContext, SameContextScoresOne) {
  const std::vector<ChunkKey> ctx = {K(1), K(2), K(3)};
  const std::vector<float> w = {0.2f, 0.3f, 0.5f};
  const ContextMatch m = MatchContext(ctx, w, ctx);
  EXPECT_DOUBLE_EQ(m.overlap, 1.0);
  EXPECT_DOUBLE_EQ(m.order_penalty, 0.0);
  EXPECT_DOUBLE_EQ(m.score, 1.0);
}

TEST(MatchContext, OverlapIsAttentionWeighted) {
  const std::vector<ChunkKey> old_ctx = {K(1), K(2), K(3)};
  const std::vector<float> w = {0.2f, 0.3f, 0.5f};
  // K(2) is gone, K(9) is new: kept 0.2 + 0.5 of 1.0; K(1) still before K(3).
  const std::vector<ChunkKey> new_ctx = {K(9), K(1), K(3)};
  const ContextMatch m = MatchContext(old_ctx, w, new_ctx);
  EXPECT_NEAR(m.overlap, 0.7, 1e-6);
  EXPECT_DOUBLE_EQ(m.order_penalty, 0.0);
  EXPECT_NEAR(m.score, 0.7, 1e-6);
  EXPECT_EQ(m.shared, 2u);
  // Weights need not be normalized: 2, 3, 5 give the same shares.
  EXPECT_NEAR(MatchContext(old_ctx, std::vector<float>{2, 3, 5}, new_ctx).overlap, 0.7, 1e-6);
}

TEST(MatchContext, MissingOrZeroWeightsCountEveryChunkTheSame) {
  const std::vector<ChunkKey> old_ctx = {K(1), K(2), K(3), K(4)};
  const std::vector<ChunkKey> new_ctx = {K(4), K(2)};
  EXPECT_DOUBLE_EQ(MatchContext(old_ctx, {}, new_ctx).overlap, 0.5);
  EXPECT_DOUBLE_EQ(MatchContext(old_ctx, std::vector<float>{0, 0, 0, 0}, new_ctx).overlap, 0.5);
  // Negative and NaN weights count as 0: only K(2)'s 1.0 and K(3)'s 3.0 remain; K(2) is present.
  const std::vector<float> odd = {-1.0f, 1.0f, 3.0f, std::nanf("")};
  EXPECT_DOUBLE_EQ(MatchContext(old_ctx, odd, new_ctx).overlap, 0.25);
}

TEST(MatchContext, OrderFlipsArePenalisedPerPair) {
  const std::vector<ChunkKey> old_ctx = {K(1), K(2), K(3)};
  // New order 3, 1, 2: pairs (1,2) kept, (1,3) flipped, (2,3) flipped -> penalty 2/3.
  const ContextMatch m = MatchContext(old_ctx, {}, std::vector<ChunkKey>{K(3), K(1), K(2)});
  EXPECT_DOUBLE_EQ(m.overlap, 1.0);
  EXPECT_NEAR(m.order_penalty, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.score, 1.0 / 3.0, 1e-12);
  // Fully reversed: every pair flipped.
  EXPECT_DOUBLE_EQ(MatchContext(old_ctx, {}, std::vector<ChunkKey>{K(3), K(2), K(1)}).score, 0.0);
  // A single surviving chunk has no pairs, so no penalty.
  EXPECT_DOUBLE_EQ(MatchContext(old_ctx, {}, std::vector<ChunkKey>{K(2)}).order_penalty, 0.0);
}

TEST(MatchContext, RepeatedKeysInTheNewContextUseTheFirstOccurrence) {
  const std::vector<ChunkKey> old_ctx = {K(1), K(2)};
  const ContextMatch m = MatchContext(old_ctx, {}, std::vector<ChunkKey>{K(1), K(2), K(1)});
  EXPECT_DOUBLE_EQ(m.order_penalty, 0.0);
  EXPECT_DOUBLE_EQ(m.score, 1.0);
}

}  // namespace
}  // namespace kvtier
