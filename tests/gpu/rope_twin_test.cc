// CPU twin of the key re-rotation: bit for bit against client/src/rope.cc's algorithm re-derived here (its
// angle expression, float math, the codec's element conversion), against RoPE applied from scratch at the
// new position, and the argument checks. Also the element conversions the twins and kernels share, against
// the codec's, over every 16-bit pattern. Run everywhere, with or without CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "element_math.h"
#include "kvtier/codec/convert.h"
#include "kvtier/gpu/rope.h"
#include "gpu_test_common.h"
#include "paged_kv_cases.h"

namespace kvtier::gpu {
namespace {

using testing::Bytes;

// client/src/rope.cc's RerotateKeys, step for step (this file is built with -ffp-contract=off, like the twin;
// rope.cc gets the same from the default x86-64 target, which has no FMA).
void RopeCcRerotate(const ChunkShape& s, const RopeParams& rope, int64_t delta, Bytes& kv) {
  const uint32_t pairs = rope.rotary_dim / 2;
  std::vector<float> cos(pairs), sin(pairs);
  for (uint32_t i = 0; i < pairs; ++i) {
    const double frequency = std::pow(rope.theta, -2.0 * i / rope.rotary_dim);
    const double angle = static_cast<double>(delta) * frequency;
    cos[i] = static_cast<float>(std::cos(angle));
    sin[i] = static_cast<float>(std::sin(angle));
  }
  const size_t elem = DTypeBytes(s.dtype);
  const size_t row = size_t{s.num_kv_heads} * s.head_dim;
  const size_t half = size_t{s.num_tokens} * row * elem;
  std::vector<float> values(row);
  for (uint32_t layer = 0; layer < s.num_layers; ++layer) {
    std::byte* keys = kv.data() + size_t{layer} * 2 * half;
    for (uint32_t t = 0; t < s.num_tokens; ++t) {
      const std::span<std::byte> bytes{keys + size_t{t} * row * elem, row * elem};
      codec::ElementsToFloat(bytes, s.dtype, values);
      for (uint32_t h = 0; h < s.num_kv_heads; ++h) {
        float* head = values.data() + size_t{h} * s.head_dim;
        for (uint32_t i = 0; i < pairs; ++i) {
          const uint32_t a = rope.style == RopeStyle::kNeox ? i : 2 * i;
          const uint32_t b = rope.style == RopeStyle::kNeox ? i + pairs : 2 * i + 1;
          const float x = head[a], y = head[b];
          head[a] = x * cos[i] - y * sin[i];
          head[b] = x * sin[i] + y * cos[i];
        }
      }
      codec::FloatToElements(values, s.dtype, bytes);
    }
  }
}

struct RopeCase {
  ChunkShape shape;
  RopeParams rope;
};

RopeCase RandomRopeCase(std::mt19937_64& rng, DType dtype, RopeStyle style) {
  RopeCase c;
  c.shape = ChunkShape{testing::Uniform(rng, 1, 3), testing::Uniform(rng, 1, 20), testing::Uniform(rng, 1, 4),
                       2 * testing::Uniform(rng, 4, 64), dtype};
  const uint32_t rotary = testing::Uniform(rng, 0, 1) ? c.shape.head_dim : 2 * testing::Uniform(rng, 1, c.shape.head_dim / 2);
  c.rope = RopeParams{style, rotary, testing::Uniform(rng, 0, 1) ? 10000.0 : 500000.0};
  return c;
}

using testing::kDTypes;
constexpr int64_t kDeltas[] = {1, -1, 17, -4096, 32768, 1000003, -3000000000LL};

TEST(RerotateTwin, EqualsRopeCcBitForBit) {
  std::mt19937_64 rng(11);
  for (DType dtype : kDTypes) {
    for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kGptj}) {
      for (int64_t delta : kDeltas) {
        const RopeCase c = RandomRopeCase(rng, dtype, style);
        SCOPED_TRACE(std::string(DTypeName(dtype)) + (style == RopeStyle::kNeox ? " neox" : " gptj") + " D" +
                     std::to_string(c.shape.head_dim) + " rotary " + std::to_string(c.rope.rotary_dim) +
                     " delta " + std::to_string(delta));
        const Bytes original = testing::RandomValues(rng, dtype, c.shape.Bytes());
        Bytes twin = original, reference = original;
        ASSERT_TRUE(RerotateChunkKeysCpu(c.shape, c.rope, delta, twin).ok());
        RopeCcRerotate(c.shape, c.rope, delta, reference);
        ASSERT_EQ(twin, reference);
        ASSERT_NE(twin, original);
      }
    }
  }
}

TEST(RerotateTwin, ValuesAndDimsPastRotaryAreUntouched) {
  std::mt19937_64 rng(12);
  const ChunkShape s{2, 5, 3, 16, DType::kBf16};
  const RopeParams rope{RopeStyle::kNeox, 6, 10000.0};
  const Bytes original = testing::RandomValues(rng, s.dtype, s.Bytes());
  Bytes chunk = original;
  ASSERT_TRUE(RerotateChunkKeysCpu(s, rope, 99, chunk).ok());
  const size_t row = size_t{s.num_kv_heads} * s.head_dim * 2;
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < s.num_tokens; ++t) {
        const size_t at = ((size_t{l} * 2 + kv) * s.num_tokens + t) * row;
        for (uint32_t h = 0; h < s.num_kv_heads; ++h) {
          for (uint32_t d = 0; d < s.head_dim; ++d) {
            const size_t e = at + (size_t{h} * s.head_dim + d) * 2;
            if (kv == 1 || d >= rope.rotary_dim) {
              ASSERT_EQ(std::memcmp(&chunk[e], &original[e], 2), 0) << "l" << l << " kv" << kv << " d" << d;
            }
          }
        }
      }
    }
  }
  Bytes same = original;
  ASSERT_TRUE(RerotateChunkKeysCpu(s, rope, 0, same).ok());
  EXPECT_EQ(same, original);
}

// RoPE from scratch, in double: the key at position `pos` of raw (un-rotated) vector `raw`.
std::vector<double> RopeAt(const std::vector<double>& raw, const RopeParams& rope, double pos) {
  std::vector<double> out = raw;
  for (uint32_t i = 0; i < rope.rotary_dim / 2; ++i) {
    const double angle = pos * std::pow(rope.theta, -2.0 * i / rope.rotary_dim);
    const uint32_t a = rope.style == RopeStyle::kNeox ? i : 2 * i;
    const uint32_t b = rope.style == RopeStyle::kNeox ? i + rope.rotary_dim / 2 : 2 * i + 1;
    out[a] = raw[a] * std::cos(angle) - raw[b] * std::sin(angle);
    out[b] = raw[a] * std::sin(angle) + raw[b] * std::cos(angle);
  }
  return out;
}

TEST(RerotateTwin, MovesAKeyToItsNewPosition) {
  std::mt19937_64 rng(13);
  std::uniform_real_distribution<double> dist(-2.0, 2.0);
  for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kGptj}) {
    for (const auto& [pos, delta] : std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {100, 3000}, {5000, -4900}}) {
      const ChunkShape s{1, 1, 1, 64, DType::kFp32};
      const RopeParams rope{style, 48, 10000.0};
      std::vector<double> raw(s.head_dim);
      for (double& v : raw) v = dist(rng);
      const std::vector<double> at_old = RopeAt(raw, rope, static_cast<double>(pos));
      const std::vector<double> at_new = RopeAt(raw, rope, static_cast<double>(pos + delta));
      Bytes chunk(s.Bytes());
      for (uint32_t d = 0; d < s.head_dim; ++d) {
        const float f = static_cast<float>(at_old[d]);
        std::memcpy(&chunk[d * 4], &f, 4);
      }
      ASSERT_TRUE(RerotateChunkKeysCpu(s, rope, delta, chunk).ok());
      for (uint32_t d = 0; d < s.head_dim; ++d) {
        float f;
        std::memcpy(&f, &chunk[d * 4], 4);
        // fp32 input rounding plus one rotation's rounding, on values of magnitude <= ~3.
        EXPECT_NEAR(f, at_new[d], 2e-6) << "dim " << d << " pos " << pos << " delta " << delta;
      }
    }
  }
}

TEST(RerotateTwin, Checks) {
  Bytes chunk(ChunkShape{1, 2, 1, 8, DType::kFp16}.Bytes());
  const RopeParams good{RopeStyle::kGptj, 8, 10000.0};
  auto expect = [](const Status& s, const std::string& fragment) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
  };
  expect(RerotateChunkKeysCpu(ChunkShape{0, 2, 1, 8, DType::kFp16}, good, 1, chunk), "num_layers is 0");
  expect(RerotateChunkKeysCpu(ChunkShape{1, 2, 1, 8, DType::kUnspecified}, good, 1, chunk), "dtype");
  expect(RerotateChunkKeysCpu(ChunkShape{1, 3, 1, 8, DType::kFp16}, good, 1, chunk),
         "chunk of 64 bytes is not 96 bytes");
  expect(RerotateChunkKeysCpu(ChunkShape{1, 2, 1, 8, DType::kFp16}, RopeParams{RopeStyle::kNone, 8, 1e4}, 1, chunk),
         "rope style");
  expect(RerotateChunkKeysCpu(ChunkShape{1, 2, 1, 8, DType::kFp16}, RopeParams{RopeStyle::kNeox, 0, 1e4}, 1, chunk),
         "rotary_dim 0 must be even and > 0");
  expect(RerotateChunkKeysCpu(ChunkShape{1, 2, 1, 8, DType::kFp16}, RopeParams{RopeStyle::kNeox, 8, -1}, 1, chunk),
         "theta");
  expect(RerotateChunkKeysCpu(ChunkShape{1, 2, 1, 8, DType::kFp16}, good, 1, std::span<std::byte>(chunk.data() + 1, 64)),
         "chunk is not aligned to the 2-byte element");
  EXPECT_TRUE(RerotateChunkKeysCpu(ChunkShape{1, 2, 1, 8, DType::kFp16}, good, 1, chunk).ok());
  // The device entry point checks the same, plus its rotary_dim limit.
  expect(RerotateChunkKeys(ChunkShape{1, 3, 1, 8, DType::kFp16}, good, 1, chunk), "chunk of 64 bytes");
  Bytes wide(ChunkShape{1, 1, 1, 512, DType::kFp16}.Bytes());
  expect(RerotateChunkKeys(ChunkShape{1, 1, 1, 512, DType::kFp16}, RopeParams{RopeStyle::kNeox, 512, 1e4}, 1, wide),
         "exceeds the device kernels' limit of 256");
}

TEST(RerotateTwin, ParamsFromFingerprint) {
  ModelFingerprint fp;
  fp.rope_style = RopeStyle::kGptj;
  fp.rotary_dim = 64;
  fp.rope_theta = 1e6;
  const RopeParams p = RopeParams::FromFingerprint(fp);
  EXPECT_EQ(p.style, RopeStyle::kGptj);
  EXPECT_EQ(p.rotary_dim, 64u);
  EXPECT_EQ(p.theta, 1e6);
}

// The conversions compiled into twins and kernels equal the codec's (the ones rope.cc uses) on every
// 16-bit pattern read, and on a sweep of floats written (NaNs compared as NaN-ness plus the codec's payload).
TEST(ElementMath, ConversionsEqualTheCodec) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    std::byte raw[2];
    std::memcpy(raw, &h, 2);
    float codec_half, codec_bf16;
    codec::ElementsToFloat(raw, DType::kFp16, std::span<float>(&codec_half, 1));
    codec::ElementsToFloat(raw, DType::kBf16, std::span<float>(&codec_bf16, 1));
    const float mine_half = detail::HalfToFloat(h), mine_bf16 = detail::Bf16ToFloat(h);
    if (std::isnan(codec_half)) {
      ASSERT_TRUE(std::isnan(mine_half)) << std::hex << bits;
    } else {
      ASSERT_EQ(detail::FloatBits(mine_half), detail::FloatBits(codec_half)) << std::hex << bits;
    }
    ASSERT_EQ(detail::FloatBits(mine_bf16), detail::FloatBits(codec_bf16)) << std::hex << bits;
  }
  std::mt19937_64 rng(14);
  std::vector<float> values;
  for (int i = 0; i < 2000000; ++i) values.push_back(detail::BitsFloat(static_cast<uint32_t>(rng())));
  for (float special : {0.0f, -0.0f, 65504.0f, 65520.0f, 65519.99f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 1e-40f, INFINITY,
                        -INFINITY, NAN}) {
    values.push_back(special);
  }
  std::vector<std::byte> half(values.size() * 2), bf16(values.size() * 2);
  codec::FloatToElements(values, DType::kFp16, half);
  codec::FloatToElements(values, DType::kBf16, bf16);
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t codec_h, codec_b;
    std::memcpy(&codec_h, &half[2 * i], 2);
    std::memcpy(&codec_b, &bf16[2 * i], 2);
    ASSERT_EQ(detail::FloatToHalf(values[i]), codec_h) << std::hex << detail::FloatBits(values[i]);
    ASSERT_EQ(detail::FloatToBf16(values[i]), codec_b) << std::hex << detail::FloatBits(values[i]);
  }
}

}  // namespace
}  // namespace kvtier::gpu
