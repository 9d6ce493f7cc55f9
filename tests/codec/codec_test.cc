// Round trips of every codec on several shapes and dtypes, the lossy codecs' documented error bounds
// element by element, options and shape validation with exact codes and messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "codec_test_util.h"
#include "container.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"

namespace kvtier::codec {
namespace {

using testing::AsFloats;
using testing::MakeKv;
using testing::Shape;
using testing::TestKv;

const KvShape kShapes[] = {
    Shape(2, 2, 16, 1, DType::kFp16),    // one token
    Shape(2, 3, 7, 9, DType::kFp16),     // odd head_dim, rows not a multiple of 4 codes
    Shape(1, 2, 8, 40, DType::kBf16),    // one layer; a second, short kivi2 group
    Shape(3, 2, 8, 33, DType::kFp32),    // 33 tokens
    Shape(2, 1, 5, 33, DType::kBf16),
    Shape(2, 4, 64, 64, DType::kFp16),   // realistic head_dim
};

std::string Describe(const KvShape& s) {
  return "L" + std::to_string(s.num_layers) + " H" + std::to_string(s.num_kv_heads) + " D" +
         std::to_string(s.head_dim) + " T" + std::to_string(s.num_tokens) + " " + std::string(DTypeName(s.dtype));
}

std::vector<std::byte> MustEncode(const KvView& kv, const EncodeOptions& o) {
  std::vector<std::byte> out;
  Status s = Encode(kv, o, out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::vector<std::byte> MustDecode(std::span<const std::byte> enc, const KvShape& shape, const DecodeOptions& o = {}) {
  std::vector<std::byte> out(shape.RawBytes());
  Status s = Decode(enc, out, o);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// Which tokens a mixed container keeps at 8 bits (its bitmap stream).
std::vector<bool> MixedHighTokens(std::span<const std::byte> enc) {
  auto pc = internal::ParseContainer(enc);
  EXPECT_TRUE(pc.ok());
  auto bitmap = internal::StreamBytes(*pc, 0);
  EXPECT_TRUE(bitmap.ok());
  std::vector<bool> high(pc->info.shape.num_tokens);
  for (size_t t = 0; t < high.size(); ++t) high[t] = (std::to_integer<int>((*bitmap)[t / 8]) >> (t % 8)) & 1;
  return high;
}

struct RowRange {
  double min, max, absmax;
};
RowRange RangeOf(const float* x, size_t n, size_t stride = 1) {
  RowRange r{x[0], x[0], 0};
  for (size_t i = 0; i < n; ++i) {
    r.min = std::min<double>(r.min, x[i * stride]);
    r.max = std::max<double>(r.max, x[i * stride]);
  }
  r.absmax = std::max(std::fabs(r.min), std::fabs(r.max));
  return r;
}

// Per-element bound of a lossy codec for this input (FORMAT.md), before output rounding.
std::vector<double> Bounds(CodecId codec, const TestKv& kv, std::span<const std::byte> enc, int low_bits) {
  const KvShape& s = kv.shape;
  const uint64_t C = uint64_t{s.num_kv_heads} * s.head_dim, T = s.num_tokens;
  std::vector<double> b(kv.values.size());
  std::vector<bool> high;
  if (codec == CodecId::kMixed) high = MixedHighTokens(enc);
  for (uint64_t l = 0; l < s.num_layers; ++l) {
    for (int k = 0; k < 2; ++k) {
      const uint64_t base = (l * 2 + k) * T * C;
      const float* x = kv.values.data() + base;
      if (codec == CodecId::kKivi2 && k == 0) {
        for (uint64_t t0 = 0; t0 < T; t0 += 32) {
          const uint64_t n = std::min<uint64_t>(32, T - t0);
          for (uint64_t c = 0; c < C; ++c) {
            const RowRange r = RangeOf(x + t0 * C + c, n, C);
            for (uint64_t t = t0; t < t0 + n; ++t) b[base + t * C + c] = testing::AsymBound(r.min, r.max, 3);
          }
        }
        continue;
      }
      for (uint64_t t = 0; t < T; ++t) {
        const float* row = x + t * C;
        double* out = b.data() + base + t * C;
        if (codec == CodecId::kKivi2) {
          for (uint64_t h = 0; h < s.num_kv_heads; ++h) {
            const RowRange r = RangeOf(row + h * s.head_dim, s.head_dim);
            std::fill_n(out + h * s.head_dim, s.head_dim, testing::AsymBound(r.min, r.max, 3));
          }
          continue;
        }
        const RowRange r = RangeOf(row, C);
        const bool int8 = codec == CodecId::kInt8 || high[t];
        std::fill_n(out, C, int8 ? testing::Int8Bound(r.absmax) : testing::AsymBound(r.min, r.max, (1 << low_bits) - 1));
      }
    }
  }
  return b;
}

void ExpectWithinBounds(CodecId codec, const TestKv& kv, std::span<const std::byte> enc,
                        std::span<const std::byte> decoded, int low_bits = 2) {
  const std::vector<float> got = AsFloats(kv.shape, decoded);
  const std::vector<double> bound = Bounds(codec, kv, enc, low_bits);
  size_t bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    const double x = kv.values[i];
    const double limit = bound[i] + testing::OutputRounding(kv.shape.dtype, std::fabs(x) + bound[i]);
    if (!(std::fabs(got[i] - x) <= limit)) {
      ++bad;
      ADD_FAILURE() << CodecName(codec) << " " << Describe(kv.shape) << " element " << i << ": " << x << " -> "
                    << got[i] << ", error " << std::fabs(got[i] - x) << " > bound " << limit;
    }
  }
}

TEST(CodecRoundTrip, LosslessCodecsAreBitExact) {
  for (const KvShape& s : kShapes) {
    const TestKv kv = MakeKv(s);
    for (CodecId c : {CodecId::kRaw, CodecId::kLossless}) {
      EncodeOptions o;
      o.codec = c;
      const auto enc = MustEncode(kv.View(), o);
      EXPECT_LE(enc.size(), MaxEncodedBytes(s));
      EXPECT_EQ(MustDecode(enc, s), kv.bytes) << CodecName(c) << " " << Describe(s);
    }
  }
}

TEST(CodecRoundTrip, LosslessKeepsEveryBitPatternIncludingNanAndInf) {
  for (DType d : {DType::kFp16, DType::kBf16, DType::kFp32}) {
    const KvShape s = Shape(1, 1, 256, 257, d);
    std::vector<std::byte> bytes(s.RawBytes());
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::byte((i * 7919 + (i >> 8)) & 0xff);
    for (CodecId c : {CodecId::kRaw, CodecId::kLossless}) {
      EncodeOptions o;
      o.codec = c;
      const auto enc = MustEncode(KvView{s, bytes, {}}, o);
      EXPECT_EQ(MustDecode(enc, s), bytes) << CodecName(c);
    }
  }
}

TEST(CodecRoundTrip, LargeChunksUseSeveralStreams) {
  const KvShape s = Shape(4, 8, 128, 256, DType::kFp16);  // 4 MiB
  const TestKv kv = MakeKv(s);
  for (CodecId c : {CodecId::kRaw, CodecId::kLossless}) {
    EncodeOptions o;
    o.codec = c;
    const auto enc = MustEncode(kv.View(), o);
    auto info = Inspect(enc);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->num_streams, 4u) << CodecName(c);
    EXPECT_EQ(MustDecode(enc, s), kv.bytes);
  }
  EncodeOptions o;
  o.codec = CodecId::kLossless;
  const auto enc = MustEncode(kv.View(), o);
  EXPECT_LT(enc.size(), kv.bytes.size()) << "byte-shuffle + zstd should shrink smooth fp16 KV";
}

TEST(CodecRoundTrip, LossyCodecsStayWithinTheirBounds) {
  for (const KvShape& s : kShapes) {
    const TestKv kv = MakeKv(s, 7);
    for (CodecId c : {CodecId::kInt8, CodecId::kKivi2, CodecId::kMixed}) {
      for (int bits : {2, 3, 4}) {
        if (c != CodecId::kMixed && bits != 2) continue;
        EncodeOptions o;
        o.codec = c;
        o.mixed_low_bits = bits;
        o.mixed_top_fraction = 0.3f;
        const auto enc = MustEncode(kv.View(), o);
        EXPECT_LE(enc.size(), MaxEncodedBytes(s));
        auto info = Inspect(enc);
        ASSERT_TRUE(info.ok());
        EXPECT_EQ(info->codec, c);
        EXPECT_EQ(info->shape, s);
        EXPECT_EQ(info->encoded_bytes, enc.size());
        ExpectWithinBounds(c, kv, enc, MustDecode(enc, s), bits);
      }
    }
  }
}

TEST(CodecRoundTrip, LossyCodecsAreSmallerThanRaw) {
  const KvShape s = Shape(2, 8, 128, 64, DType::kFp16);
  const TestKv kv = MakeKv(s);
  struct Case {
    CodecId codec;
    double max_ratio;  // encoded / raw
  };
  for (Case c : {Case{CodecId::kInt8, 0.52}, Case{CodecId::kKivi2, 0.2}, Case{CodecId::kMixed, 0.35}}) {
    EncodeOptions o;
    o.codec = c.codec;
    const auto enc = MustEncode(kv.View(), o);
    EXPECT_LT(double(enc.size()) / kv.bytes.size(), c.max_ratio) << CodecName(c.codec);
  }
}

TEST(CodecRoundTrip, ConstantAndZeroRowsAreExact) {
  const KvShape s = Shape(1, 2, 8, 40, DType::kFp16);
  for (float value : {0.0f, 1.5f, -3.25f}) {
    std::vector<float> v(s.NumValues(), value);
    std::vector<std::byte> bytes(s.RawBytes());
    internal::FromFloat(v.data(), v.size(), s.dtype, bytes.data());
    for (CodecId c : {CodecId::kInt8, CodecId::kKivi2, CodecId::kMixed}) {
      EncodeOptions o;
      o.codec = c;
      const auto enc = MustEncode(KvView{s, bytes, {}}, o);
      EXPECT_EQ(MustDecode(enc, s), bytes) << CodecName(c) << " value " << value;
    }
  }
}

TEST(CodecRoundTrip, ExtremeButFiniteValues) {
  // fp16 extremes and subnormals: the fp16 parameters of kivi2 and mixed still cover them.
  const KvShape s = Shape(1, 1, 8, 33, DType::kFp16);
  std::vector<float> v(s.NumValues());
  for (size_t i = 0; i < v.size(); ++i) {
    const float choices[] = {65504.0f, -65504.0f, 6e-8f, -6e-8f, 0.0f, 1e-5f, 30000.0f};
    v[i] = choices[(i * 5 + i / 8) % 7];
  }
  TestKv kv{s, v, std::vector<std::byte>(s.RawBytes())};
  internal::FromFloat(v.data(), v.size(), s.dtype, kv.bytes.data());
  kv.values = AsFloats(s, kv.bytes);
  for (CodecId c : {CodecId::kInt8, CodecId::kKivi2, CodecId::kMixed}) {
    EncodeOptions o;
    o.codec = c;
    const auto enc = MustEncode(kv.View(), o);
    ExpectWithinBounds(c, kv, enc, MustDecode(enc, s));
  }
}

TEST(CodecRoundTrip, EncodingIsDeterministicAndIndependentOfTheExecutor) {
  const KvShape s = Shape(4, 2, 32, 70, DType::kBf16);
  const TestKv kv = MakeKv(s);
  ThreadPoolExecutor pool(4);
  for (CodecId c : {CodecId::kRaw, CodecId::kLossless, CodecId::kInt8, CodecId::kKivi2, CodecId::kMixed}) {
    EncodeOptions o;
    o.codec = c;
    const auto a = MustEncode(kv.View(), o);
    o.executor = &pool;
    const auto b = MustEncode(kv.View(), o);
    EXPECT_EQ(a, b) << CodecName(c);
    DecodeOptions d;
    d.executor = &pool;
    EXPECT_EQ(MustDecode(a, s, d), MustDecode(a, s)) << CodecName(c);
  }
}

TEST(CodecRoundTrip, EncodeReusesAndClearsTheOutputVector) {
  const TestKv kv = MakeKv(Shape(1, 1, 4, 2, DType::kFp16));
  std::vector<std::byte> out(1000, std::byte{1});
  ASSERT_TRUE(Encode(kv.View(), EncodeOptions{}, out).ok());
  EXPECT_EQ(out.size(), 64u + 16u + kv.bytes.size());
}

// --- mixed ---

TEST(Mixed, GivenImportanceChoosesTheTopTokensAndTheyMeetTheInt8Bound) {
  const KvShape s = Shape(2, 2, 16, 20, DType::kFp16);
  const TestKv kv = MakeKv(s, 3);
  std::vector<float> importance(s.num_tokens, 1.0f);
  importance[3] = 9.0f;
  importance[17] = 8.0f;
  importance[11] = 5.0f;
  importance[12] = 5.0f;
  EncodeOptions o;
  o.codec = CodecId::kMixed;
  importance[19] = 5.0f;
  o.mixed_top_fraction = 0.15f;  // ceil(0.15 * 20) = 3: tokens 3, 17 and 11 (ties 11/12/19 -> 11)
  o.mixed_low_bits = 2;
  KvView view = kv.View();
  view.importance = importance;
  const auto enc = MustEncode(view, o);
  const std::vector<bool> high = MixedHighTokens(enc);
  for (uint32_t t = 0; t < s.num_tokens; ++t) EXPECT_EQ(high[t], t == 3 || t == 17 || t == 11) << "token " << t;
  const auto dec = MustDecode(enc, s);
  ExpectWithinBounds(CodecId::kMixed, kv, enc, dec, 2);
  // The chosen tokens are at int8 precision: check them against the int8 bound explicitly, and that
  // the others are visibly coarser.
  const auto got = AsFloats(s, dec);
  const uint64_t C = uint64_t{s.num_kv_heads} * s.head_dim;
  for (uint64_t row = 0; row < uint64_t{s.num_layers} * 2 * s.num_tokens; ++row) {
    const uint64_t t = row % s.num_tokens;
    double absmax = 0, max_err = 0;
    for (uint64_t c = 0; c < C; ++c) absmax = std::max(absmax, std::fabs(double(kv.values[row * C + c])));
    for (uint64_t c = 0; c < C; ++c) max_err = std::max(max_err, std::fabs(double(got[row * C + c]) - kv.values[row * C + c]));
    const double int8_limit = testing::Int8Bound(absmax) + testing::OutputRounding(s.dtype, absmax * 1.01);
    if (high[t]) {
      EXPECT_LE(max_err, int8_limit) << "row " << row;
    } else {
      EXPECT_GT(max_err, int8_limit) << "2-bit row " << row << " unexpectedly as precise as int8";
    }
  }
}

TEST(Mixed, FractionZeroAndOne) {
  const KvShape s = Shape(1, 2, 8, 9, DType::kFp32);
  const TestKv kv = MakeKv(s);
  for (float f : {0.0f, 1.0f}) {
    EncodeOptions o;
    o.codec = CodecId::kMixed;
    o.mixed_top_fraction = f;
    const auto enc = MustEncode(kv.View(), o);
    const auto high = MixedHighTokens(enc);
    EXPECT_EQ(std::count(high.begin(), high.end(), true), f == 0.0f ? 0 : 9);
    ExpectWithinBounds(CodecId::kMixed, kv, enc, MustDecode(enc, s));
  }
}

TEST(Mixed, ComputedImportancePrefersTokensWithLargeKeys) {
  const KvShape s = Shape(2, 1, 8, 10, DType::kFp16);
  TestKv kv = MakeKv(s);
  // Token 6's keys are 10x larger in both layers; it must be the one token kept at 8 bits.
  for (uint32_t l = 0; l < 2; ++l) {
    for (uint32_t c = 0; c < 8; ++c) kv.values[((l * 2) * 10 + 6) * 8 + c] *= 10.0f;
  }
  internal::FromFloat(kv.values.data(), kv.values.size(), s.dtype, kv.bytes.data());
  kv.values = AsFloats(s, kv.bytes);
  EncodeOptions o;
  o.codec = CodecId::kMixed;
  o.mixed_top_fraction = 0.1f;
  const auto enc = MustEncode(kv.View(), o);
  const auto high = MixedHighTokens(enc);
  for (uint32_t t = 0; t < 10; ++t) EXPECT_EQ(high[t], t == 6);
}

TEST(Mixed, CodecParamHoldsBitsAndFraction) {
  const TestKv kv = MakeKv(Shape(1, 1, 8, 4, DType::kFp16));
  EncodeOptions o;
  o.codec = CodecId::kMixed;
  o.mixed_low_bits = 3;
  o.mixed_top_fraction = 0.25f;
  const auto enc = MustEncode(kv.View(), o);
  auto pc = internal::ParseContainer(enc);
  ASSERT_TRUE(pc.ok());
  EXPECT_EQ(pc->params.codec_param, 3u | 2500u << 8);
}

TEST(Mixed, ImportanceOfTheWrongSizeIsRefused) {
  const TestKv kv = MakeKv(Shape(1, 1, 8, 4, DType::kFp16));
  std::vector<float> importance(3, 1.0f);
  KvView v = kv.View();
  v.importance = importance;
  EncodeOptions o;
  o.codec = CodecId::kMixed;
  std::vector<std::byte> out;
  Status s = Encode(v, o, out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("importance has 3 scores, the chunk has 4 tokens"), std::string::npos) << s.message();
  importance.assign(4, 1.0f);
  importance[2] = std::numeric_limits<float>::quiet_NaN();
  v.importance = importance;
  s = Encode(v, o, out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("importance of token 2"), std::string::npos) << s.message();
}

// --- errors ---

void ExpectError(const Status& s, StatusCode code, const std::string& substring) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(substring), std::string::npos) << "message: " << s.message() << "\nwanted: " << substring;
}

TEST(CodecErrors, BadShapes) {
  struct Case {
    KvShape shape;
    std::string message;
  };
  const Case cases[] = {
      {Shape(0, 1, 1, 1, DType::kFp16), "num_layers 0 is not in [1, 1024]"},
      {Shape(1025, 1, 1, 1, DType::kFp16), "num_layers 1025"},
      {Shape(1, 0, 1, 1, DType::kFp16), "num_kv_heads 0"},
      {Shape(1, 1, 4097, 1, DType::kFp16), "head_dim 4097 is not in [1, 4096]"},
      {Shape(1, 1, 1, 65537, DType::kFp16), "num_tokens 65537"},
      {Shape(1, 1, 1, 1, DType::kUnspecified), "dtype 0 is not fp16, bf16 or fp32"},
      {Shape(1, 1, 1, 1, DType(9)), "dtype 9"},
  };
  for (const Case& c : cases) {
    ExpectError(c.shape.Validate(), StatusCode::kInvalidArgument, c.message);
    std::vector<std::byte> data(c.shape.RawBytes()), out;
    ExpectError(Encode(KvView{c.shape, data, {}}, EncodeOptions{}, out), StatusCode::kInvalidArgument, c.message);
  }
  EXPECT_TRUE(Shape(1024, 1024, 4096, 65536, DType::kFp32).Validate().ok());
}

TEST(CodecErrors, DataSizeMismatch) {
  const KvShape s = Shape(1, 2, 4, 3, DType::kFp16);  // 96 bytes
  std::vector<std::byte> data(95), out;
  for (CodecId c : kAllCodecs) {
    EncodeOptions o;
    o.codec = c;
    ExpectError(Encode(KvView{s, data, {}}, o, out), StatusCode::kInvalidArgument,
                "KV data has 95 bytes, the shape needs 96");
    EXPECT_TRUE(out.empty());
  }
}

TEST(CodecErrors, OptionsOutOfRange) {
  const TestKv kv = MakeKv(Shape(1, 1, 4, 2, DType::kFp16));
  struct Case {
    void (*set)(EncodeOptions&);
    std::string message;
  };
  const Case cases[] = {
      {[](EncodeOptions& o) { o.zstd_level = 0; }, "zstd_level 0 is not in [1, 19]"},
      {[](EncodeOptions& o) { o.zstd_level = 20; }, "zstd_level 20"},
      {[](EncodeOptions& o) { o.level = 0; }, "cachegen level 0 is not in [1, 3]"},
      {[](EncodeOptions& o) { o.level = 4; }, "cachegen level 4"},
      {[](EncodeOptions& o) { o.max_tokens_per_stream = 0; }, "max_tokens_per_stream 0 is not in [1, 256]"},
      {[](EncodeOptions& o) { o.max_tokens_per_stream = 257; }, "max_tokens_per_stream 257"},
      {[](EncodeOptions& o) { o.mixed_top_fraction = -0.1f; }, "mixed_top_fraction"},
      {[](EncodeOptions& o) { o.mixed_top_fraction = 1.5f; }, "mixed_top_fraction"},
      {[](EncodeOptions& o) { o.mixed_top_fraction = std::numeric_limits<float>::quiet_NaN(); }, "mixed_top_fraction"},
      {[](EncodeOptions& o) { o.mixed_low_bits = 1; }, "mixed_low_bits 1 is not 2, 3 or 4"},
      {[](EncodeOptions& o) { o.mixed_low_bits = 5; }, "mixed_low_bits 5"},
      {[](EncodeOptions& o) { o.codec = CodecId(0); }, "unknown codec id 0"},
      {[](EncodeOptions& o) { o.codec = CodecId(7); }, "unknown codec id 7"},
  };
  for (const Case& c : cases) {
    EncodeOptions o;
    o.codec = CodecId::kMixed;
    c.set(o);
    std::vector<std::byte> out;
    ExpectError(Encode(kv.View(), o, out), StatusCode::kInvalidArgument, c.message);
  }
}

TEST(CodecErrors, WrongOutputSize) {
  const TestKv kv = MakeKv(Shape(1, 2, 4, 3, DType::kFp16));
  for (CodecId c : {CodecId::kRaw, CodecId::kLossless, CodecId::kInt8, CodecId::kKivi2, CodecId::kMixed}) {
    EncodeOptions o;
    o.codec = c;
    const auto enc = MustEncode(kv.View(), o);
    for (size_t n : {size_t{0}, size_t{95}, size_t{97}}) {
      std::vector<std::byte> out(n);
      ExpectError(Decode(enc, out, {}), StatusCode::kInvalidArgument,
                  "output buffer has " + std::to_string(n) + " bytes, the chunk decodes to 96");
    }
  }
}

TEST(CodecErrors, NonFiniteInputToLossyCodecsNamesTheRow) {
  const KvShape s = Shape(3, 2, 4, 5, DType::kFp16);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    TestKv kv = MakeKv(s);
    kv.values[((2 * 2 + 1) * 5 + 3) * 8 + 6] = bad;  // layer 2, V, token 3
    internal::FromFloat(kv.values.data(), kv.values.size(), s.dtype, kv.bytes.data());
    for (CodecId c : {CodecId::kInt8, CodecId::kKivi2, CodecId::kMixed}) {
      EncodeOptions o;
      o.codec = c;
      std::vector<std::byte> out;
      ExpectError(Encode(kv.View(), o, out), StatusCode::kInvalidArgument, "at layer 2 V token 3");
    }
    for (CodecId c : {CodecId::kRaw, CodecId::kLossless}) {  // lossless codecs keep any bits
      EncodeOptions o;
      o.codec = c;
      EXPECT_EQ(MustDecode(MustEncode(kv.View(), o), s), kv.bytes);
    }
  }
}

TEST(CodecErrors, ValuesBeyondTheFp16RangeAreRefusedByFp16ParameterCodecs) {
  const KvShape s = Shape(1, 1, 4, 2, DType::kFp32);
  TestKv kv = MakeKv(s);
  kv.values[1 * 4 + 2] = 1e6f;  // layer 0 K token 1
  internal::FromFloat(kv.values.data(), kv.values.size(), s.dtype, kv.bytes.data());
  EncodeOptions o;
  o.codec = CodecId::kKivi2;
  std::vector<std::byte> out;
  ExpectError(Encode(kv.View(), o, out), StatusCode::kInvalidArgument, "beyond the fp16 range (|x| > 65504) at layer 0 K token 1");
  o.codec = CodecId::kInt8;  // fp32 scale: fine
  ASSERT_TRUE(Encode(kv.View(), o, out).ok());
  ExpectWithinBounds(CodecId::kInt8, kv, out, MustDecode(out, s));
  o.codec = CodecId::kMixed;  // fine when the token is kept at 8 bits, refused at low bits
  o.mixed_top_fraction = 1.0f;
  ASSERT_TRUE(Encode(kv.View(), o, out).ok());
  o.mixed_top_fraction = 0.0f;
  ExpectError(Encode(kv.View(), o, out), StatusCode::kInvalidArgument, "at layer 0 K token 1");
}

TEST(CodecNames, RoundTripAndUnknown) {
  for (CodecId c : kAllCodecs) {
    auto parsed = ParseCodecName(CodecName(c));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, c);
  }
  EXPECT_EQ(CodecName(CodecId(0)), "unknown");
  auto bad = ParseCodecName("zip");
  ASSERT_FALSE(bad.ok());
  ExpectError(bad.status(), StatusCode::kInvalidArgument, "raw, lossless, int8, cachegen, kivi2, mixed");
  EXPECT_TRUE(IsLossless(CodecId::kRaw));
  EXPECT_TRUE(IsLossless(CodecId::kLossless));
  for (CodecId c : {CodecId::kInt8, CodecId::kCacheGen, CodecId::kKivi2, CodecId::kMixed}) EXPECT_FALSE(IsLossless(c));
}

TEST(CodecSizes, MaxEncodedBytesBoundsEveryCodec) {
  for (const KvShape& s : kShapes) {
    const TestKv kv = MakeKv(s);
    for (CodecId c : kAllCodecs) {
      EncodeOptions o;
      o.codec = c;
      std::vector<std::byte> out;
      Status st = Encode(kv.View(), o, out);
      ASSERT_TRUE(st.ok()) << CodecName(c) << ": " << st.ToString();
      EXPECT_LE(out.size(), MaxEncodedBytes(s)) << CodecName(c) << " " << Describe(s);
    }
  }
}

}  // namespace
}  // namespace kvtier::codec
