// Tests of the reference model against the reference numbers in tests/data/MODELS.md (computed with an
// independent fp32 forward pass), plus the KV export/inject contract other parts of kvtier rely on.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kvtier/refmodel/eval.h"
#include "kvtier/refmodel/model.h"
#include "kvtier/refmodel/rope.h"
#include "kvtier/refmodel/session.h"
#include "kvtier/refmodel/tokenizer.h"
#include "test_data.h"

namespace kvtier::refmodel {
namespace {

using testing::kTestDataDir;
using testing::ReadFile;

class RefModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = Model::Load(kTestDataDir + "/stories260K.bin");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = new Model(*m);
    auto t = Tokenizer::Load(kTestDataDir + "/tok512.bin", m->config().vocab_size);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tokenizer_ = new Tokenizer(*t);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }

  // Text tokens (no BOS) of the start of the corpus.
  static std::vector<int> CorpusTokens(size_t n) {
    const auto pieces = SplitCorpus(ReadFile(kTestDataDir + "/tinystories_val.txt"));
    std::vector<int> t = tokenizer_->Encode(pieces.at(0), false, false);
    t.resize(std::min(t.size(), n));
    return t;
  }

  static std::vector<float> Logits(Session& s, int token) {
    auto r = s.Forward(token);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::vector<float>(r->begin(), r->end()) : std::vector<float>();
  }

  static inline Model* model_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
};

TEST_F(RefModelTest, ConfigMatchesTheCheckpoint) {
  const Config& c = model_->config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.seq_len, 512);
  EXPECT_EQ(c.head_size(), 8);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_EQ(Session(*model_).KvFloatsPerToken(), 5u * 2 * 32);
}

TEST_F(RefModelTest, GreedyFromBosReproducesTheReferenceText) {
  Session s(*model_);
  const int bos = Tokenizer::kBos;
  auto gen = Greedy(s, std::vector<int>{bos}, 511, bos);
  ASSERT_TRUE(gen.ok()) << gen.status().ToString();
  EXPECT_EQ(gen->size(), 345u);
  std::vector<int> all = {bos};
  all.insert(all.end(), gen->begin(), gen->end());
  // The reference file is the decoded text plus the newline its writer appended.
  EXPECT_EQ(tokenizer_->DecodeAll(all) + "\n", ReadFile(kTestDataDir + "/stories260K.greedy.txt"));
}

TEST_F(RefModelTest, PerplexityOfTheFirst40kCorpusTokens) {
  const auto pieces = SplitCorpus(ReadFile(kTestDataDir + "/tinystories_val.txt"));
  Session s(*model_);
  auto r = CorpusPerplexity(s, *tokenizer_, pieces, 40000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tokens, 40000);
  EXPECT_NEAR(r->perplexity(), 3.79, 0.005);  // the reference says 3.79; this pass gives 3.7904
}

TEST_F(RefModelTest, CorpusSplitKeepsPiecesWithin900Characters) {
  const std::string text = ReadFile(kTestDataDir + "/tinystories_val.txt");
  const auto pieces = SplitCorpus(text);
  EXPECT_EQ(pieces.size(), 999u);
  for (const std::string& p : pieces) {
    size_t chars = 0;
    for (unsigned char c : p) chars += (c & 0xC0) != 0x80;
    EXPECT_LE(chars, 900u);
    EXPECT_EQ(p.find("\n\n"), std::string::npos);
    EXPECT_NE(p.back(), ' ');
  }
  EXPECT_EQ(SplitCorpus("a \n\n\n b\n\nc", 4), (std::vector<std::string>{"a\nb", "c"}));
  EXPECT_EQ(SplitCorpus("", 900), std::vector<std::string>{});
}

// Straight run: the prompt then the continuation in one session. Replayed run: a fresh session gets
// the prompt's KV but the last token through InjectKv, then runs the rest. The logits must agree.
TEST_F(RefModelTest, InjectedKvContinuesLikeTheStraightRun) {
  const std::vector<int> tokens = CorpusTokens(60);
  const int prompt_len = 40;
  Session straight(*model_);
  std::vector<std::vector<float>> expected;
  for (size_t i = 0; i < tokens.size(); ++i) {
    auto logits = Logits(straight, tokens[i]);
    if (int(i) >= prompt_len - 1) expected.push_back(logits);
  }
  for (KeyForm form : {KeyForm::kPostRope, KeyForm::kPreRope}) {
    SCOPED_TRACE(form == KeyForm::kPostRope ? "post-RoPE" : "pre-RoPE");
    const int n = prompt_len - 1;
    std::vector<float> kv(n * straight.KvFloatsPerToken());
    ASSERT_TRUE(straight.ExportKv(0, n, form, kv).ok());
    Session replay(*model_);
    ASSERT_TRUE(replay.InjectKv(0, kv, n, form).ok());
    EXPECT_EQ(replay.length(), n);
    for (size_t i = n, j = 0; i < tokens.size(); ++i, ++j) {
      const std::vector<float> got = Logits(replay, tokens[i]);
      ASSERT_EQ(got.size(), expected[j].size());
      // Bit-identical for both forms: a pre-RoPE key is rotated by the same ApplyRope call at the same
      // position as in the straight run.
      ASSERT_EQ(0, std::memcmp(got.data(), expected[j].data(), got.size() * sizeof(float))) << "position " << i;
    }
  }
}

// ForwardMany computes blocks of tokens together; every dot product keeps the order of additions of
// the one-token path, so the logits must not differ in a single bit.
TEST_F(RefModelTest, ForwardManyEqualsForwardOneTokenAtATime) {
  const std::vector<int> tokens = CorpusTokens(45);  // crosses blocks of 16 and groups of 4
  Session one(*model_), many(*model_);
  std::vector<float> expected;
  for (int t : tokens) {
    const std::vector<float> l = Logits(one, t);
    expected.insert(expected.end(), l.begin(), l.end());
  }
  auto first = many.ForwardMany(std::span<const int>(tokens).first(7));
  ASSERT_TRUE(first.ok());
  std::vector<float> got(first->begin(), first->end());
  auto rest = many.ForwardMany(std::span<const int>(tokens).subspan(7));
  ASSERT_TRUE(rest.ok());
  got.insert(got.end(), rest->begin(), rest->end());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_EQ(0, std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)));
  EXPECT_EQ(many.length(), int(tokens.size()));
  EXPECT_EQ(0, std::memcmp(many.logits().data(), one.logits().data(), one.logits().size() * sizeof(float)));
  // A bad token anywhere rejects the whole call before anything runs.
  const std::vector<int> bad = {5, 6, 9999};
  EXPECT_EQ(many.ForwardMany(bad).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(many.length(), int(tokens.size()));
}

TEST_F(RefModelTest, InjectBehindAComputedPrefixAndOverwrite) {
  const std::vector<int> tokens = CorpusTokens(30);
  Session straight(*model_);
  std::vector<float> last;
  for (int t : tokens) last = Logits(straight, t);
  const int n = int(tokens.size()) - 1;
  std::vector<float> kv((n - 10) * straight.KvFloatsPerToken());
  ASSERT_TRUE(straight.ExportKv(10, n, KeyForm::kPostRope, kv).ok());

  Session replay(*model_);
  for (int i = 0; i < 10; ++i) Logits(replay, tokens[i]);
  ASSERT_TRUE(replay.InjectKv(10, kv, n - 10, KeyForm::kPostRope).ok());
  EXPECT_EQ(replay.length(), n);
  const std::vector<float> got = Logits(replay, tokens[n]);
  EXPECT_EQ(0, std::memcmp(got.data(), last.data(), got.size() * sizeof(float)));

  // Overwriting positions inside the sequence keeps the length.
  std::vector<float> one(straight.KvFloatsPerToken());
  ASSERT_TRUE(straight.ExportKv(3, 4, KeyForm::kPreRope, one).ok());
  ASSERT_TRUE(replay.InjectKv(3, one, 1, KeyForm::kPreRope).ok());
  EXPECT_EQ(replay.length(), n + 1);
}

TEST_F(RefModelTest, PreRopeKeysRotatedByTheirPositionArePostRopeKeys) {
  const std::vector<int> tokens = CorpusTokens(20);
  Session s(*model_);
  for (int t : tokens) Logits(s, t);
  const Config& c = model_->config();
  const size_t n = tokens.size(), row = size_t(c.kv_dim());
  std::vector<float> pre(n * s.KvFloatsPerToken()), post(pre.size());
  ASSERT_TRUE(s.ExportKv(0, int(n), KeyForm::kPreRope, pre).ok());
  ASSERT_TRUE(s.ExportKv(0, int(n), KeyForm::kPostRope, post).ok());
  for (int l = 0; l < c.n_layers; ++l) {
    const size_t k_off = size_t(l) * 2 * n * row, v_off = k_off + n * row;
    for (size_t t = 0; t < n; ++t) {
      std::span<float> key(pre.data() + k_off + t * row, row);
      ApplyRope(key, c.head_size(), int(t), c.rope_theta);
      ASSERT_EQ(0, std::memcmp(key.data(), post.data() + k_off + t * row, row * sizeof(float)))
          << "layer " << l << " token " << t;
      ApplyRope(key, c.head_size(), -int(t), c.rope_theta);  // back again, up to rounding
    }
    // V does not depend on the key form.
    EXPECT_EQ(0, std::memcmp(pre.data() + v_off, post.data() + v_off, n * row * sizeof(float)));
  }
  // Injecting post-RoPE keys derives the pre-RoPE copy by rotating back.
  Session replay(*model_);
  ASSERT_TRUE(replay.InjectKv(0, post, int(n), KeyForm::kPostRope).ok());
  std::vector<float> derived(pre.size()), original(pre.size());
  ASSERT_TRUE(replay.ExportKv(0, int(n), KeyForm::kPreRope, derived).ok());
  ASSERT_TRUE(s.ExportKv(0, int(n), KeyForm::kPreRope, original).ok());
  for (size_t i = 0; i < derived.size(); ++i) ASSERT_NEAR(derived[i], original[i], 1e-5) << i;
}

TEST_F(RefModelTest, RopeIsARotationOfInterleavedPairs) {
  std::vector<float> v = {1, 0, 0, 1, 3, 4, -2, 5};  // one head of 8
  const std::vector<float> orig = v;
  ApplyRope(v, 8, 7, 10000.0f);
  for (int i = 0; i < 8; i += 2) {
    // Each pair keeps its length; pair 0 turns by exactly `position` radians.
    EXPECT_NEAR(std::hypot(v[i], v[i + 1]), std::hypot(orig[i], orig[i + 1]), 1e-5);
  }
  EXPECT_NEAR(v[0], std::cos(7.0f), 1e-6);
  EXPECT_NEAR(v[1], std::sin(7.0f), 1e-6);
  ApplyRope(v, 8, -7, 10000.0f);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(v[i], orig[i], 1e-5);
}

// The scoring convention of eval.h: inject prompt[0 .. n-1), then score {prompt[n-1], continuation}.
TEST_F(RefModelTest, ScoreContinuationBehindInjectedKvMatchesScoringFromBos) {
  const std::vector<int> text = CorpusTokens(50);
  Session s(*model_);
  auto from_bos = ScoreFromBos(s, text);
  ASSERT_TRUE(from_bos.ok());
  std::vector<int> with_bos = {Tokenizer::kBos};
  with_bos.insert(with_bos.end(), text.begin(), text.end());
  s.Reset();
  auto full = ScoreContinuation(s, with_bos, /*keep_distributions=*/true);
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(full->logprobs.size(), text.size());
  EXPECT_NEAR(full->nll_sum(), from_bos->nll_sum, 1e-3);
  for (size_t i = 0; i < text.size(); ++i) EXPECT_FLOAT_EQ(full->distribution(i)[text[i]], full->logprobs[i]);

  const int n = 30;  // prompt = with_bos[0 .. n)
  std::vector<float> kv((n - 1) * s.KvFloatsPerToken());
  ASSERT_TRUE(s.ExportKv(0, n - 1, KeyForm::kPostRope, kv).ok());
  Session replay(*model_);
  ASSERT_TRUE(replay.InjectKv(0, kv, n - 1, KeyForm::kPostRope).ok());
  auto tail = ScoreContinuation(replay, std::span<const int>(with_bos).subspan(n - 1), true);
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->logprobs.size(), with_bos.size() - n);
  for (size_t i = 0; i < tail->logprobs.size(); ++i) {
    EXPECT_EQ(tail->logprobs[i], full->logprobs[n - 1 + i]);
    EXPECT_EQ(KlDivergence(full->distribution(n - 1 + i), tail->distribution(i)), 0.0);
  }
}

TEST_F(RefModelTest, TruncateThenRerunIsDeterministic) {
  const std::vector<int> tokens = CorpusTokens(20);
  Session s(*model_);
  std::vector<float> first;
  for (int t : tokens) first = Logits(s, t);
  ASSERT_TRUE(s.Truncate(10).ok());
  EXPECT_EQ(s.length(), 10);
  EXPECT_TRUE(s.logits().empty());
  std::vector<float> again;
  for (size_t i = 10; i < tokens.size(); ++i) again = Logits(s, tokens[i]);
  EXPECT_EQ(first, again);
  EXPECT_EQ(s.Truncate(21).code(), StatusCode::kInvalidArgument);
  s.Reset();
  EXPECT_EQ(s.length(), 0);
}

TEST_F(RefModelTest, SessionRejectsBadArguments) {
  Session s(*model_);
  EXPECT_EQ(s.Forward(512).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Forward(-1).status().code(), StatusCode::kInvalidArgument);
  Logits(s, Tokenizer::kBos);
  std::vector<float> kv(2 * s.KvFloatsPerToken());
  EXPECT_EQ(s.ExportKv(0, 2, KeyForm::kPostRope, kv).code(), StatusCode::kInvalidArgument);  // beyond length
  EXPECT_EQ(s.ExportKv(0, 1, KeyForm::kPostRope, kv).code(), StatusCode::kInvalidArgument);  // wrong size
  EXPECT_EQ(s.InjectKv(2, kv, 2, KeyForm::kPostRope).code(), StatusCode::kInvalidArgument);  // leaves a hole
  EXPECT_EQ(s.InjectKv(1, kv, 1, KeyForm::kPostRope).code(), StatusCode::kInvalidArgument);  // wrong size
  std::vector<float> too_many(size_t(s.capacity()) * s.KvFloatsPerToken());
  EXPECT_EQ(s.InjectKv(1, too_many, s.capacity(), KeyForm::kPostRope).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(s.InjectKv(0, too_many, s.capacity(), KeyForm::kPreRope).ok());
  EXPECT_EQ(s.Forward(3).status().code(), StatusCode::kOutOfRange);  // context full
}

TEST_F(RefModelTest, TokenizerKnownIdsAndRoundTrip) {
  const std::vector<int> hello = tokenizer_->Encode("Hello world", true, true);
  EXPECT_EQ(hello, (std::vector<int>{1, 346, 306, 414, 263, 304, 341, 2}));
  EXPECT_EQ(tokenizer_->DecodeAll(hello), "Hello world");
  EXPECT_EQ(tokenizer_->Encode("", true, false), std::vector<int>{Tokenizer::kBos});
  EXPECT_EQ(tokenizer_->Decode(Tokenizer::kBos, 346), "He");  // dummy-prefix space dropped after BOS
  EXPECT_EQ(tokenizer_->Decode(5, 346), " He");
  EXPECT_EQ(tokenizer_->Decode(5, Tokenizer::kFirstByteToken + '\n'), "\n");

  // Codepoints outside the vocabulary fall back to bytes and come back intact.
  const std::string odd = "caf\xc3\xa9 \xc5\x93 \xf0\x9f\x99\x82!";
  const std::vector<int> odd_ids = tokenizer_->Encode(odd, true, false);
  EXPECT_EQ(tokenizer_->DecodeAll(odd_ids), odd);
  EXPECT_EQ(std::count(odd_ids.begin(), odd_ids.end(), Tokenizer::kFirstByteToken + 0xF0), 1);

  for (const std::string& piece : SplitCorpus(ReadFile(kTestDataDir + "/tinystories_val.txt"))) {
    ASSERT_EQ(tokenizer_->DecodeAll(tokenizer_->Encode(piece, true, false)), piece);
  }
}

TEST_F(RefModelTest, GreedyOutputTokenizesBackToTheSameIds) {
  Session s(*model_);
  auto gen = Greedy(s, std::vector<int>{Tokenizer::kBos}, 511, Tokenizer::kBos);
  ASSERT_TRUE(gen.ok());
  std::vector<int> all = {Tokenizer::kBos};
  all.insert(all.end(), gen->begin(), gen->end());
  EXPECT_EQ(tokenizer_->Encode(tokenizer_->DecodeAll(all), true, false), all);
}

class LoadErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = ReadFile(kTestDataDir + "/stories260K.bin");
    path_ = (std::filesystem::temp_directory_path() /
             ("refmodel_test_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".bin"))
                .string();
  }
  void TearDown() override { std::filesystem::remove(path_); }

  Status LoadWith(const std::string& content) {
    std::ofstream(path_, std::ios::binary).write(content.data(), std::streamsize(content.size()));
    return Model::Load(path_).status();
  }
  std::string WithHeaderField(int index, int32_t value) {
    std::string b = bytes_;
    std::memcpy(b.data() + 4 * index, &value, 4);
    return b;
  }

  std::string bytes_;
  std::string path_;
};

TEST_F(LoadErrorTest, ShortFile) {
  const Status s = LoadWith(bytes_.substr(0, 20));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("short file"), std::string::npos) << s.message();
}

TEST_F(LoadErrorTest, TruncatedWeights) {
  const Status s = LoadWith(bytes_.substr(0, bytes_.size() - 4));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("size mismatch"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("1056536"), std::string::npos) << s.message();
}

TEST_F(LoadErrorTest, TrailingBytes) {
  const Status s = LoadWith(bytes_ + "x");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("size mismatch"), std::string::npos) << s.message();
}

TEST_F(LoadErrorTest, BadDimensions) {
  for (auto [field, value] : {std::pair{3, 0}, std::pair{3, 7}, std::pair{4, 3}, std::pair{0, -64}, std::pair{6, 1 << 30}}) {
    const Status s = LoadWith(WithHeaderField(field, value));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << field << "=" << value;
    EXPECT_NE(s.message().find("bad dimensions"), std::string::npos) << s.message();
  }
  // A dimension that is plausible but does not match the data is a size mismatch.
  const Status s = LoadWith(WithHeaderField(1, 173));
  EXPECT_NE(s.message().find("size mismatch"), std::string::npos) << s.message();
}

TEST_F(LoadErrorTest, MissingFileAndBadTokenizer) {
  EXPECT_EQ(Model::Load(path_ + ".missing").status().code(), StatusCode::kNotFound);
  std::ofstream(path_, std::ios::binary) << ReadFile(kTestDataDir + "/tok512.bin").substr(0, 3000);
  const auto t = Tokenizer::Load(path_, 512);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("cut off"), std::string::npos) << t.status().message();
  EXPECT_EQ(Tokenizer::Load(kTestDataDir + "/tok512.bin", 513).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Model::Load(kTestDataDir + "/stories260K.bin").ok());
}

}  // namespace
}  // namespace kvtier::refmodel
