// Re-rotation of cached keys (client/include/kvtier/client/rope.h) against RoPE computed at the new position
// directly: the reference model's own RoPE for GPT-J pairs, and a written-out NeoX rotation.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kvtier/client/rope.h"
#include "kvtier/codec/convert.h"
#include "kvtier/refmodel/rope.h"

namespace kvtier {
namespace {

ModelFingerprint Fp(RopeStyle style, uint32_t head_dim, uint32_t rotary_dim, DType dtype = DType::kFp32) {
  ModelFingerprint fp;
  fp.model_id = "rerotate";
  fp.num_layers = 2;
  fp.num_kv_heads = 3;
  fp.head_dim = head_dim;
  fp.dtype = dtype;
  fp.rope_style = style;
  fp.rope_theta = 10000;
  fp.rotary_dim = rotary_dim;
  fp.keys_post_rope = true;
  fp.chunk_tokens = 16;
  return fp;
}

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, 1);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// NeoX RoPE at `position`, written out: pair (i, i + rotary/2), frequency theta^(-2i/rotary).
void NeoxRope(std::vector<float>& head, uint32_t rotary, double theta, int64_t position) {
  for (uint32_t i = 0; i < rotary / 2; ++i) {
    const double angle = position * std::pow(theta, -2.0 * i / rotary);
    const double x = head[i], y = head[i + rotary / 2];
    head[i] = static_cast<float>(x * std::cos(angle) - y * std::sin(angle));
    head[i + rotary / 2] = static_cast<float>(x * std::sin(angle) + y * std::cos(angle));
  }
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b, float tolerance) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tolerance) << "dim " << i;
}

TEST(RerotateTest, ThereAndBackIsIdentity) {
  for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kGptj}) {
    const ModelFingerprint fp = Fp(style, 64, 64);
    const std::vector<float> original = Random(64, 1);
    std::vector<float> head = original;
    RerotateHead(fp, 1234, head);
    EXPECT_GT(std::abs(head[0] - original[0]) + std::abs(head[1] - original[1]), 1e-3f);  // it did move
    RerotateHead(fp, -1234, head);
    ExpectNear(head, original, 1e-5f);
  }
}

TEST(RerotateTest, GptjMatchesTheReferenceModelsRopeAtTheNewPosition) {
  const ModelFingerprint fp = Fp(RopeStyle::kGptj, 64, 64);
  const std::vector<float> raw = Random(64, 2);
  std::vector<float> cached = raw, direct = raw;
  refmodel::ApplyRope(cached, 64, 37, 10000.0f);    // computed at position 37 ...
  RerotateHead(fp, 1000 - 37, cached);               // ... moved to 1000
  refmodel::ApplyRope(direct, 64, 1000, 10000.0f);  // computed at 1000 directly
  ExpectNear(cached, direct, 2e-4f);
}

TEST(RerotateTest, NeoxMatchesRopeAtTheNewPositionAndLeavesDimsPastRotaryAlone) {
  const ModelFingerprint fp = Fp(RopeStyle::kNeox, 64, 32);  // partial rotary: dims 32..63 never rotate
  const std::vector<float> raw = Random(64, 3);
  std::vector<float> cached = raw, direct = raw;
  NeoxRope(cached, 32, 10000, 5);
  RerotateHead(fp, 4096 - 5, cached);
  NeoxRope(direct, 32, 10000, 4096);
  ExpectNear(cached, direct, 2e-4f);
  for (size_t i = 32; i < 64; ++i) EXPECT_EQ(cached[i], raw[i]);
}

TEST(RerotateTest, ChunkKeysMoveAndValuesStayByteExact) {
  const ModelFingerprint fp = Fp(RopeStyle::kNeox, 16, 16, DType::kFp16);
  const uint32_t tokens = 4;
  const size_t elems = tokens * fp.KvBytesPerToken() / 2;
  std::vector<std::byte> kv(tokens * fp.KvBytesPerToken());
  codec::FloatToElements(Random(elems, 4), DType::kFp16, kv);
  const std::vector<std::byte> before = kv;
  ASSERT_TRUE(RerotateKeys(fp, tokens, 300, kv).ok());
  const size_t half = tokens * fp.num_kv_heads * fp.head_dim * 2;  // bytes of K (or V) per layer
  for (uint32_t layer = 0; layer < fp.num_layers; ++layer) {
    const size_t k = layer * 2 * half, v = k + half;
    EXPECT_TRUE(std::equal(kv.begin() + v, kv.begin() + v + half, before.begin() + v)) << "V of layer " << layer;
    // Every K head equals the float rotation of the stored head, within fp16 rounding.
    for (size_t head = 0; head < tokens * fp.num_kv_heads; ++head) {
      std::vector<float> want(16), got(16);
      codec::ElementsToFloat({before.data() + k + head * 32, 32}, DType::kFp16, want);
      codec::ElementsToFloat({kv.data() + k + head * 32, 32}, DType::kFp16, got);
      RerotateHead(fp, 300, want);
      ExpectNear(got, want, 4e-3f);
    }
  }
  ASSERT_TRUE(RerotateKeys(fp, tokens, -300, kv).ok());  // and back, within fp16 rounding twice
  std::vector<float> a(elems), b(elems);
  codec::ElementsToFloat(kv, DType::kFp16, a);
  codec::ElementsToFloat(before, DType::kFp16, b);
  ExpectNear(a, b, 8e-3f);
}

TEST(RerotateTest, RefusesWhatItCannotRotate) {
  ModelFingerprint fp = Fp(RopeStyle::kGptj, 16, 16);
  std::vector<std::byte> kv(2 * fp.KvBytesPerToken());
  EXPECT_EQ(RerotateKeys(fp, 3, 1, kv).code(), StatusCode::kInvalidArgument);  // wrong size
  fp.keys_post_rope = false;
  Status s = RerotateKeys(fp, 2, 1, kv);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("before RoPE"), std::string::npos) << s.message();
  fp.keys_post_rope = true;
  fp.rope_style = RopeStyle::kNone;
  fp.rotary_dim = 0;
  EXPECT_EQ(RerotateKeys(fp, 2, 1, kv).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvtier
