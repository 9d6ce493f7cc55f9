// Codecs judged by the real model's predictions (tests/data: stories260K on held-out TinyStories):
// KV of a prompt goes through each codec and the continuation is scored behind it. Thresholds are on
// deterministic quantities (KL divergence, argmax agreement, sizes), with margin to the values
// `kvtier bench-codec` reports on 64 passages (bench/RESULTS.md), so a codec change that hurts the
// model fails here.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "kvtier/codec/codec.h"
#include "kvtier/codec/convert.h"
#include "kvtier/refmodel/eval.h"
#include "kvtier/refmodel/session.h"
#include "kvtier/refmodel/tokenizer.h"

namespace kvtier::codec {
namespace {

using refmodel::KeyForm;

constexpr int kPrefix = 128;
constexpr int kScored = 32;

struct Prompt {
  std::vector<int> tokens;        // BOS + text: kPrefix + 1 + kScored
  std::vector<std::byte> kv;      // fp16 KV of the first kPrefix positions
  refmodel::ContinuationScores exact;
};

class CodecQualityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto model = refmodel::Model::Load(std::string(KVTIER_TEST_DATA) + "/stories260K.bin");
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto tokenizer = refmodel::Tokenizer::Load(std::string(KVTIER_TEST_DATA) + "/tok512.bin", model->config().vocab_size);
    ASSERT_TRUE(tokenizer.ok());
    std::ifstream in(std::string(KVTIER_TEST_DATA) + "/tinystories_val.txt");
    const std::string corpus((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    session_ = new refmodel::Session(*model);
    const auto& c = model->config();
    shape_ = {uint32_t(c.n_layers), uint32_t(c.n_kv_heads), uint32_t(c.head_size()), kPrefix, DType::kFp16};
    // Pieces long enough, taken from across the corpus.
    const auto pieces = refmodel::SplitCorpus(corpus);
    for (size_t i = 0; i < pieces.size() && prompts_.size() < 6; i += 97) {
      auto tokens = tokenizer->Encode(pieces[i], /*bos=*/true, /*eos=*/false);
      if (tokens.size() < kPrefix + 1 + kScored) continue;
      tokens.resize(kPrefix + 1 + kScored);
      prompts_.push_back(Exact(std::move(tokens)));
    }
    ASSERT_GE(prompts_.size(), 4u);
  }
  static void TearDownTestSuite() { delete session_; }

  static Prompt Exact(std::vector<int> tokens) {
    Prompt p;
    p.tokens = std::move(tokens);
    session_->Reset();
    for (int i = 0; i < kPrefix; ++i) EXPECT_TRUE(session_->Forward(p.tokens[i]).ok());
    std::vector<float> kv(shape_.NumValues());
    EXPECT_TRUE(session_->ExportKv(0, kPrefix, KeyForm::kPostRope, kv).ok());
    p.kv.resize(shape_.RawBytes());
    FloatToElements(kv, DType::kFp16, p.kv);
    p.exact = Score(p, kv);
    return p;
  }

  static refmodel::ContinuationScores Score(const Prompt& p, std::span<const float> kv) {
    session_->Reset();
    EXPECT_TRUE(session_->InjectKv(0, kv, kPrefix, KeyForm::kPostRope).ok());
    auto scores = refmodel::ScoreContinuation(*session_, std::span(p.tokens).subspan(kPrefix), true);
    EXPECT_TRUE(scores.ok());
    return std::move(scores).value();
  }

  struct Outcome {
    double bits_per_value = 0;
    double kl_mean = 0;
    double agreement = 0;
  };

  // Every prompt's KV through `options`, scored against the exact fp32 KV.
  static Outcome Measure(const EncodeOptions& options) {
    Outcome out;
    uint64_t bytes = 0, positions = 0, agree = 0;
    std::vector<std::byte> encoded, decoded(shape_.RawBytes());
    std::vector<float> kv(shape_.NumValues());
    for (const Prompt& p : prompts_) {
      EXPECT_TRUE(Encode({shape_, p.kv, {}}, options, encoded).ok());
      EXPECT_TRUE(Decode(encoded, decoded, {}).ok());
      bytes += encoded.size();
      ElementsToFloat(decoded, DType::kFp16, kv);
      const auto scores = Score(p, kv);
      for (size_t i = 0; i < scores.logprobs.size(); ++i) {
        out.kl_mean += refmodel::KlDivergence(p.exact.distribution(i), scores.distribution(i));
        const auto e = p.exact.distribution(i), r = scores.distribution(i);
        agree += std::max_element(e.begin(), e.end()) - e.begin() == std::max_element(r.begin(), r.end()) - r.begin();
        ++positions;
      }
    }
    out.bits_per_value = 8.0 * double(bytes) / double(shape_.NumValues() * prompts_.size());
    out.kl_mean /= double(positions);
    out.agreement = double(agree) / double(positions);
    return out;
  }

  static EncodeOptions Options(CodecId codec, int level = kCacheGenDefaultLevel) {
    EncodeOptions o;
    o.codec = codec;
    o.level = level;
    return o;
  }

  static inline refmodel::Session* session_ = nullptr;
  static inline KvShape shape_;
  static inline std::vector<Prompt> prompts_;
};

TEST_F(CodecQualityTest, LosslessIsExactlyFp16) {
  const Outcome raw = Measure(Options(CodecId::kRaw));
  const Outcome lossless = Measure(Options(CodecId::kLossless));
  EXPECT_EQ(lossless.kl_mean, raw.kl_mean);  // bit-identical KV, bit-identical predictions
  EXPECT_LT(raw.kl_mean, 1e-5);              // fp16 itself barely moves the model
  EXPECT_LT(lossless.bits_per_value, 16.0);
}

TEST_F(CodecQualityTest, Int8IsTheBaseline) {
  const Outcome int8 = Measure(Options(CodecId::kInt8));
  EXPECT_LT(int8.kl_mean, 1e-3) << int8.kl_mean;
  EXPECT_GE(int8.agreement, 0.98);
}

TEST_F(CodecQualityTest, CacheGenDefaultIsHalfOfInt8AtSmallLoss) {
  const Outcome int8 = Measure(Options(CodecId::kInt8));
  const Outcome cachegen = Measure(Options(CodecId::kCacheGen));
  EXPECT_LE(2.0 * cachegen.bits_per_value, int8.bits_per_value) << cachegen.bits_per_value << " vs " << int8.bits_per_value;
  EXPECT_LT(cachegen.kl_mean, 0.02) << cachegen.kl_mean;
  EXPECT_GE(cachegen.agreement, 0.93);
}

TEST_F(CodecQualityTest, CacheGenLevelsTradeSizeForQuality) {
  const Outcome l1 = Measure(Options(CodecId::kCacheGen, 1));
  const Outcome l2 = Measure(Options(CodecId::kCacheGen, 2));
  const Outcome l3 = Measure(Options(CodecId::kCacheGen, 3));
  EXPECT_LT(l1.bits_per_value, l2.bits_per_value);
  EXPECT_LT(l2.bits_per_value, l3.bits_per_value);
  EXPECT_GT(l1.kl_mean, l2.kl_mean);
  EXPECT_GT(l2.kl_mean, l3.kl_mean);
  EXPECT_LT(l3.kl_mean, 0.005) << l3.kl_mean;
}

}  // namespace
}  // namespace kvtier::codec
