// Test vectors for chunk keys. The expected values were computed with the `xxhsum -H2` tool (XXH3-128)
// over the byte strings specified in docs/keys.md, independently of this code base; a change here
// breaks every client in every other language and must come with a format version bump.
#include "kvtier/client/chunker.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace kvtier {
namespace {

ModelFingerprint VectorFingerprint() {
  ModelFingerprint fp;
  fp.model_id = "kvtier-test/llama-like";
  fp.num_layers = 32;
  fp.num_kv_heads = 8;
  fp.head_dim = 128;
  fp.dtype = DType::kFp16;
  fp.rope_theta = 500000.0;
  fp.rope_style = RopeStyle::kNeox;
  fp.rotary_dim = 128;
  fp.keys_post_rope = false;
  fp.chunk_tokens = 4;
  return fp;
}

TEST(ChunkerTest, FingerprintDigestVector) {
  EXPECT_EQ(VectorFingerprint().Digest().ToHex(), "0878717a762af65f79f022afb3b90331");
}

TEST(ChunkerTest, PrefixAndContentKeyVectors) {
  const Chunker chunker(VectorFingerprint());
  const std::vector<uint32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  const auto prefix = chunker.Split(tokens, KeyMode::kPrefix);
  ASSERT_EQ(prefix.size(), 2u);
  EXPECT_EQ(prefix[0].key.ToHex(), "b63f7ba6e5ed843a95c57190778a41b1");
  EXPECT_EQ(prefix[1].key.ToHex(), "1ea34a06392582fdbfe654d6953be700");
  EXPECT_EQ(prefix[1].begin, 4u);
  EXPECT_EQ(prefix[1].end, 8u);
  const auto content = chunker.Split(tokens, KeyMode::kContent);
  EXPECT_EQ(content[1].key.ToHex(), "be1011bb8a8fdd1ee127b6f41c1000b1");
}

TEST(ChunkerTest, PrefixKeysDependOnEverythingBefore) {
  const Chunker chunker(VectorFingerprint());
  std::vector<uint32_t> a(12), b(12);
  std::iota(a.begin(), a.end(), 100u);
  b = a;
  b[0] = 999;  // differs only in the first chunk
  const auto ka = chunker.Split(a, KeyMode::kPrefix);
  const auto kb = chunker.Split(b, KeyMode::kPrefix);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(ka[i].key, kb[i].key) << "chunk " << i;
  // Content keys of the unchanged chunks are position- and prefix-independent.
  const auto ca = chunker.Split(a, KeyMode::kContent);
  const auto cb = chunker.Split(b, KeyMode::kContent);
  EXPECT_NE(ca[0].key, cb[0].key);
  EXPECT_EQ(ca[1].key, cb[1].key);
  EXPECT_EQ(ca[2].key, cb[2].key);
}

TEST(ChunkerTest, PartialTrailingChunkOnlyWhenAsked) {
  const Chunker chunker(VectorFingerprint());
  const std::vector<uint32_t> tokens = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(chunker.Split(tokens, KeyMode::kPrefix).size(), 1u);
  const auto with_partial = chunker.Split(tokens, KeyMode::kPrefix, /*include_partial=*/true);
  ASSERT_EQ(with_partial.size(), 2u);
  EXPECT_EQ(with_partial[1].end - with_partial[1].begin, 2u);
  EXPECT_TRUE(chunker.Split({}, KeyMode::kPrefix).empty());
}

TEST(ChunkerTest, DifferentFingerprintsGiveDifferentKeys) {
  auto other = VectorFingerprint();
  other.dtype = DType::kBf16;
  const std::vector<uint32_t> tokens = {1, 2, 3, 4};
  EXPECT_NE(Chunker(VectorFingerprint()).ContentKey(tokens), Chunker(other).ContentKey(tokens));
}

}  // namespace
}  // namespace kvtier
