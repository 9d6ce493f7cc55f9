// Tests of blend.h on the real test model: attention statistics during a prefill, checked against an
// independent computation, and selective recomputation from cached KV (CacheBlend, Cache-Craft), checked
// against the full prefill it approximates.
#include "kvtier/refmodel/blend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
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

// Offset of one K or V row (which: 0 = K, 1 = V) in a chunk-layout buffer of `tokens` tokens.
size_t KvRow(const Config& c, int tokens, int layer, int which, int token) {
  return ((size_t(layer) * 2 + size_t(which)) * size_t(tokens) + size_t(token)) * size_t(c.kv_dim());
}

class BlendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = Model::Load(kTestDataDir + "/stories260K.bin");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = new Model(*m);
    auto t = Tokenizer::Load(kTestDataDir + "/tok512.bin", m->config().vocab_size);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tokenizer_ = new Tokenizer(*t);
    pieces_ = new std::vector<std::string>(SplitCorpus(ReadFile(kTestDataDir + "/tinystories_val.txt")));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
    delete pieces_;
  }

  static const Config& config() { return model_->config(); }

  // The first n text tokens (no BOS) of corpus piece i.
  static std::vector<int> PieceTokens(size_t i, size_t n) {
    std::vector<int> t = tokenizer_->Encode(pieces_->at(i), false, false);
    EXPECT_GE(t.size(), n);
    t.resize(std::min(t.size(), n));
    return t;
  }

  // BOS then n - 1 text tokens of the first corpus piece.
  static std::vector<int> Prompt(size_t n) {
    std::vector<int> p = {Tokenizer::kBos};
    const std::vector<int> text = PieceTokens(0, n - 1);
    p.insert(p.end(), text.begin(), text.end());
    return p;
  }

  static std::vector<float> Export(const Session& s, int begin, int end, KeyForm form = KeyForm::kPostRope) {
    std::vector<float> kv(size_t(end - begin) * s.KvFloatsPerToken());
    EXPECT_TRUE(s.ExportKv(begin, end, form, kv).ok());
    return kv;
  }

  // A full ForwardMany of `tokens` in a fresh session.
  static Session Full(std::span<const int> tokens) {
    Session s(*model_);
    auto r = s.ForwardMany(tokens);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return s;
  }

  static std::vector<float> LogProbs(std::span<const float> logits) {
    std::vector<float> out(logits.size());
    LogSoftmax(logits, out);
    return out;
  }

  static inline Model* model_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
  static inline std::vector<std::string>* pieces_ = nullptr;
};

bool SameBits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

// ---- attention statistics ----

// Layer 0's ratio for query token t, head h, recomputed from scratch: the query straight from the weights
// (layer 0's input is the token embedding), the keys from the exported layer-0 KV, softmax in double.
double Layer0Ratio(const Model& model, std::span<const int> tokens, std::span<const float> kv, ChunkSpan chunk,
                   int t, int h) {
  const Config& c = model.config();
  const LayerWeights& w = model.layer(0);
  const float* x = model.token_embedding(tokens[size_t(t)]);
  double ss = 0;
  for (int j = 0; j < c.dim; ++j) ss += double(x[j]) * x[j];
  const double inv = 1.0 / std::sqrt(ss / c.dim + c.norm_eps);
  std::vector<float> q(size_t(c.dim));
  for (int i = 0; i < c.dim; ++i) {
    double acc = 0;
    for (int j = 0; j < c.dim; ++j) acc += double(w.wq[size_t(i) * c.dim + j]) * (w.rms_att[j] * x[j] * inv);
    q[size_t(i)] = float(acc);
  }
  ApplyRope(q, c.head_size(), t, c.rope_theta);
  const int hs = c.head_size(), kvh = h / c.queries_per_kv_head(), n = int(tokens.size());
  std::vector<double> score(size_t(t) + 1);
  for (int j = 0; j <= t; ++j) {
    const float* k = &kv[KvRow(c, n, 0, 0, j) + size_t(kvh) * hs];
    double acc = 0;
    for (int i = 0; i < hs; ++i) acc += double(q[size_t(h) * hs + i]) * k[i];
    score[size_t(j)] = acc / std::sqrt(double(hs));
  }
  const double max = *std::max_element(score.begin(), score.end());
  double sum = 0;
  for (double& s : score) sum += (s = std::exp(s - max));
  double inter = 0, intra = 0;
  for (int j = 1; j <= t; ++j) (j < chunk.begin ? inter : intra) += score[size_t(j)] / sum;
  return inter + intra > 0 ? inter / (inter + intra) : 0.0;
}

TEST_F(BlendTest, AttentionStatsPrefillEqualsForwardMany) {
  const std::vector<int> prompt = Prompt(100);
  const int n = int(prompt.size());
  Session full = Full(prompt);
  Session probed(*model_);
  const std::vector<ChunkSpan> chunks = {{0, 1}, {1, 30}, {30, 60}, {60, 100}};
  auto stats = PrefillWithAttentionStats(probed, prompt, chunks);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(probed.length(), n);
  EXPECT_TRUE(SameBits(probed.logits(), full.logits()));
  EXPECT_TRUE(SameBits(Export(probed, 0, n), Export(full, 0, n)));
  EXPECT_TRUE(SameBits(Export(probed, 0, n, KeyForm::kPreRope), Export(full, 0, n, KeyForm::kPreRope)));
  ASSERT_EQ(stats->size(), chunks.size());
}

TEST_F(BlendTest, AttentionStatsAreRatiosAndShares) {
  const std::vector<int> prompt = Prompt(100);
  Session s(*model_);
  const std::vector<ChunkSpan> chunks = {{0, 1}, {1, 30}, {30, 60}, {60, 100}};
  auto stats = PrefillWithAttentionStats(s, prompt, chunks);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ChunkAttention& a = (*stats)[i];
    SCOPED_TRACE(i);
    EXPECT_EQ(a.chunk.begin, chunks[i].begin);
    ASSERT_EQ(a.layer_context_impact.size(), size_t(config().n_layers));
    ASSERT_EQ(a.token_context_attention.size(), size_t(chunks[i].end - chunks[i].begin));
    ASSERT_EQ(a.context_attention.size(), i);
    for (float v : a.layer_context_impact) EXPECT_TRUE(v >= 0 && v <= 1) << v;
    for (float v : a.token_context_attention) EXPECT_TRUE(v >= 0 && v <= 1) << v;
    // Two means over the same (token, layer, head) ratios.
    const double token_mean = std::accumulate(a.token_context_attention.begin(), a.token_context_attention.end(), 0.0) /
                              double(a.token_context_attention.size());
    EXPECT_NEAR(token_mean, a.context_impact, 1e-6);
  }
  // BOS alone, and the chunk right behind it: no context (BOS is excluded from both sides).
  EXPECT_EQ((*stats)[0].context_impact, 0.0f);
  EXPECT_EQ((*stats)[1].context_impact, 0.0f);
  EXPECT_EQ((*stats)[1].context_attention, std::vector<float>{0.0f});
  for (size_t i = 2; i < chunks.size(); ++i) {
    const std::vector<float>& share = (*stats)[i].context_attention;
    EXPECT_GT((*stats)[i].context_impact, 0.0f);
    EXPECT_EQ(share[0], 0.0f) << "BOS is not context";
    EXPECT_NEAR(std::accumulate(share.begin(), share.end(), 0.0), 1.0, 1e-5);
  }
}

TEST_F(BlendTest, AttentionStatsMatchAnIndependentLayer0Computation) {
  const std::vector<int> prompt = Prompt(100);
  Session s(*model_);
  const std::vector<ChunkSpan> chunks = {{1, 30}, {30, 60}, {60, 100}};
  auto stats = PrefillWithAttentionStats(s, prompt, chunks);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  const std::vector<float> kv = Export(s, 0, int(prompt.size()));
  for (size_t i = 1; i < chunks.size(); ++i) {
    double sum = 0;
    for (int t = chunks[i].begin; t < chunks[i].end; ++t) {
      for (int h = 0; h < config().n_heads; ++h) sum += Layer0Ratio(*model_, prompt, kv, chunks[i], t, h);
    }
    const double want = sum / (double(chunks[i].end - chunks[i].begin) * config().n_heads);
    EXPECT_NEAR((*stats)[i].layer_context_impact[0], want, 1e-5) << "chunk " << i;
  }
}

TEST_F(BlendTest, AttentionStatsOfThreeTokensByHand) {
  // Chunk {2, 3} behind chunk {1, 2}: the one ratio per head is p[1] / (p[1] + p[2]).
  const std::vector<int> prompt = Prompt(3);
  Session s(*model_);
  const std::vector<ChunkSpan> chunks = {{1, 2}, {2, 3}};
  auto stats = PrefillWithAttentionStats(s, prompt, chunks);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  const std::vector<float> kv = Export(s, 0, 3);
  double sum = 0;
  for (int h = 0; h < config().n_heads; ++h) sum += Layer0Ratio(*model_, prompt, kv, chunks[1], 2, h);
  EXPECT_NEAR((*stats)[1].layer_context_impact[0], sum / config().n_heads, 1e-6);
  EXPECT_EQ((*stats)[1].context_attention, std::vector<float>{1.0f});
  EXPECT_EQ((*stats)[0].context_impact, 0.0f);
}

TEST_F(BlendTest, AttentionStatsRejectBadChunks) {
  const std::vector<int> prompt = Prompt(20);
  Session s(*model_);
  ASSERT_TRUE(s.ForwardMany(std::span(prompt).first(5)).ok());
  const std::span<const int> rest = std::span(prompt).subspan(5);  // positions 5 .. 19
  const struct {
    std::vector<ChunkSpan> chunks;
    std::string message;
  } cases[] = {
      {{{6, 6}}, "empty"},
      {{{4, 8}}, "before the first new position"},
      {{{10, 21}}, "ends after"},
      {{{5, 10}, {9, 12}}, "overlaps"},
      {{{10, 12}, {5, 8}}, "overlaps or precedes"},
  };
  for (const auto& c : cases) {
    auto r = PrefillWithAttentionStats(s, rest, c.chunks);
    ASSERT_FALSE(r.ok()) << c.message;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().message();
    EXPECT_EQ(s.length(), 5) << "nothing runs on error";
  }
  const std::vector<ChunkSpan> ok = {{5, 10}, {10, 20}};
  EXPECT_TRUE(PrefillWithAttentionStats(s, rest, ok).ok());
  EXPECT_EQ(s.length(), 20);
}

// ---- selective recomputation ----

TEST_F(BlendTest, RecomputingEverythingEqualsForwardMany) {
  const std::vector<int> prompt = Prompt(100);
  const int n = int(prompt.size());
  Session full = Full(prompt);
  // Cached KV that is wrong everywhere: recomputing every position must not read any of it.
  const std::vector<float> junk(size_t(n) * full.KvFloatsPerToken(), 0.5f);
  const std::vector<uint8_t> has_cached(size_t(n), 1);
  BlendOptions o;
  o.selected.resize(size_t(n));
  std::iota(o.selected.begin(), o.selected.end(), 0);
  Session s(*model_);
  auto stats = BlendPrefill(s, prompt, junk, has_cached, o);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(s.length(), n);
  EXPECT_TRUE(SameBits(s.logits(), full.logits()));
  EXPECT_TRUE(SameBits(Export(s, 0, n), Export(full, 0, n)));
  EXPECT_TRUE(SameBits(Export(s, 0, n, KeyForm::kPreRope), Export(full, 0, n, KeyForm::kPreRope)));
  EXPECT_EQ(stats->active_per_layer, std::vector<int>(size_t(config().n_layers), n));
  EXPECT_EQ(stats->recomputed, n);
  EXPECT_EQ(stats->reusable, n);
  EXPECT_EQ(stats->flops, stats->flops_full);
  EXPECT_EQ(stats->flops_full, PrefillFlops(config(), n));
  // The session continues like the straight run.
  Session cont = full;
  auto a = cont.Forward(prompt[1]);
  auto b = s.Forward(prompt[1]);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(SameBits(*a, *b));
}

TEST_F(BlendTest, ExactCacheAndOnlyTheLastPositionRecomputed) {
  const std::vector<int> prompt = Prompt(100);
  const int n = int(prompt.size());
  Session full = Full(prompt);
  std::vector<uint8_t> has_cached(size_t(n), 1);
  has_cached.back() = 0;
  Session s(*model_);
  auto stats = BlendPrefill(s, prompt, Export(full, 0, n), has_cached, BlendOptions());
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(s.logits().size(), full.logits().size());
  for (size_t v = 0; v < s.logits().size(); ++v) EXPECT_NEAR(s.logits()[v], full.logits()[v], 1e-5) << v;
  EXPECT_EQ(stats->active_per_layer, std::vector<int>(size_t(config().n_layers), 1));
  EXPECT_EQ(stats->recomputed, 0);
  EXPECT_EQ(stats->reusable, n - 1);
  EXPECT_LT(stats->flops, stats->flops_full);
}

TEST_F(BlendTest, CheckLayerKeepingEverythingEqualsForwardMany) {
  const std::vector<int> prompt = Prompt(60);
  const int n = int(prompt.size());
  Session full = Full(prompt);
  std::vector<uint8_t> has_cached(size_t(n), 1);
  has_cached[10] = 0;
  has_cached.back() = 0;
  int calls = 0;
  float key_dev = -1, value_dev = -1;
  BlendOptions o;
  o.check_layers = {1};
  o.select = [&](const CheckLayerView& v) {
    ++calls;
    EXPECT_EQ(v.layer, 1);
    EXPECT_EQ(v.check_index, 0);
    EXPECT_EQ(v.kv_dim, config().kv_dim());
    EXPECT_EQ(int(v.positions.size()), n);
    const size_t kv = size_t(v.kv_dim);
    EXPECT_EQ(v.fresh_key.size(), v.positions.size() * kv);
    EXPECT_EQ(v.cached_value.size(), v.positions.size() * kv);
    EXPECT_EQ(v.must_recompute.size(), v.positions.size());
    for (size_t i = 0; i < v.positions.size(); ++i) {
      EXPECT_EQ(v.positions[i], int(i));
      EXPECT_EQ(v.must_recompute[i], (i == 10 || int(i) == n - 1) ? 1 : 0) << i;
      if (v.must_recompute[i]) continue;
      for (size_t j = i * kv; j < (i + 1) * kv; ++j) {
        key_dev = std::max(key_dev, std::abs(v.fresh_key[j] - v.cached_key[j]));
        value_dev = std::max(value_dev, std::abs(v.fresh_value[j] - v.cached_value[j]));
      }
    }
    return std::vector<int>(v.positions.begin(), v.positions.end());
  };
  Session s(*model_);
  auto stats = BlendPrefill(s, prompt, Export(full, 0, n), has_cached, o);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(calls, 1);
  // Layer 0 ran for every position on the exact inputs, so layer 1's fresh K/V are the cached ones.
  EXPECT_EQ(key_dev, 0.0f);
  EXPECT_EQ(value_dev, 0.0f);
  EXPECT_TRUE(SameBits(s.logits(), full.logits()));
  EXPECT_TRUE(SameBits(Export(s, 0, n), Export(full, 0, n)));
  EXPECT_EQ(stats->recomputed, n - 2);
  EXPECT_EQ(stats->reusable, n - 2);
  EXPECT_EQ(stats->flops, stats->flops_full);
}

// A later passage B reused behind a new prefix A: B's KV was computed behind BOS alone and moved to its new
// positions by re-rotating the keys; A's KV is the exact prefix.
class ReuseScenario : public BlendTest {
 protected:
  void SetUp() override {
    a_ = PieceTokens(1, 40);
    b_ = PieceTokens(2, 40);
    prompt_ = {Tokenizer::kBos};
    prompt_.insert(prompt_.end(), a_.begin(), a_.end());
    prompt_.insert(prompt_.end(), b_.begin(), b_.end());
    n_ = int(prompt_.size());
    b_begin_ = 1 + int(a_.size());
    full_log_probs_ = LogProbs(Full(prompt_).logits());

    std::vector<int> bos_a = {Tokenizer::kBos}, bos_b = {Tokenizer::kBos};
    bos_a.insert(bos_a.end(), a_.begin(), a_.end());
    bos_b.insert(bos_b.end(), b_.begin(), b_.end());
    const std::vector<float> kv_a = Export(Full(bos_a), 0, b_begin_);
    std::vector<float> kv_b = Export(Full(bos_b), 1, 1 + int(b_.size()));
    const Config& c = config();
    const int nb = int(b_.size()), shift = b_begin_ - 1;
    for (int l = 0; l < c.n_layers; ++l) {
      for (int t = 0; t < nb; ++t) {
        ApplyRope(std::span(&kv_b[KvRow(c, nb, l, 0, t)], size_t(c.kv_dim())), c.head_size(), shift, c.rope_theta);
      }
    }
    cached_.assign(size_t(n_) * Session(*model_).KvFloatsPerToken(), 0.0f);
    for (int l = 0; l < c.n_layers; ++l) {
      for (int which = 0; which < 2; ++which) {
        for (int p = 0; p < n_; ++p) {
          const float* from = p < b_begin_ ? &kv_a[KvRow(c, b_begin_, l, which, p)]
                                           : &kv_b[KvRow(c, nb, l, which, p - b_begin_)];
          std::copy_n(from, c.kv_dim(), &cached_[KvRow(c, n_, l, which, p)]);
        }
      }
    }
    has_cached_.assign(size_t(n_), 1);
    has_cached_.back() = 0;  // the query token is always computed
  }

  // KL(full || blended) of the next-token distribution after the last token.
  double Kl(const BlendOptions& o, BlendStats* stats = nullptr) {
    Session s(*model_);
    auto r = BlendPrefill(s, prompt_, cached_, has_cached_, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || s.logits().empty()) return -1;
    if (stats) *stats = *r;
    return KlDivergence(full_log_probs_, LogProbs(s.logits()));
  }

  // CacheBlend's selector: the `fraction` of B's tokens whose V moved most at the check layer.
  TokenSelector LargestValueDeviation(double fraction) const {
    const int b_begin = b_begin_, k = int(std::lround(fraction * double(b_.size())));
    return [b_begin, k](const CheckLayerView& v) {
      std::vector<std::pair<double, int>> dev;
      for (size_t i = 0; i < v.positions.size(); ++i) {
        if (v.positions[i] < b_begin || v.must_recompute[i]) continue;
        double d = 0;
        for (size_t j = i * size_t(v.kv_dim); j < (i + 1) * size_t(v.kv_dim); ++j) {
          d += double(v.fresh_value[j] - v.cached_value[j]) * (v.fresh_value[j] - v.cached_value[j]);
        }
        dev.emplace_back(d, v.positions[i]);
      }
      std::sort(dev.rbegin(), dev.rend());
      std::vector<int> keep;
      for (int i = 0; i < k && i < int(dev.size()); ++i) keep.push_back(dev[size_t(i)].second);
      return keep;
    };
  }

  std::vector<int> a_, b_, prompt_;
  int n_ = 0, b_begin_ = 0;
  std::vector<float> full_log_probs_, cached_;
  std::vector<uint8_t> has_cached_;
};

TEST_F(ReuseScenario, RecomputingByValueDeviationRecoversTheFullPrefill) {
  BlendStats none_stats, some_stats, all_stats;
  const double none = Kl(BlendOptions(), &none_stats);
  BlendOptions some;
  some.check_layers = {1};
  some.select = LargestValueDeviation(0.3);
  const double partial = Kl(some, &some_stats);
  BlendOptions all = some;
  all.select = LargestValueDeviation(1.0);
  const double everything = Kl(all, &all_stats);
  RecordProperty("kl_none", std::to_string(none));
  RecordProperty("kl_30pct", std::to_string(partial));
  EXPECT_GT(none, 1e-6) << "B's KV computed without A must differ";
  EXPECT_LT(partial, none);
  EXPECT_GE(partial, 0.0);
  EXPECT_NEAR(everything, 0.0, 1e-9);
  EXPECT_EQ(none_stats.recomputed, 0);
  EXPECT_EQ(some_stats.recomputed, 12);  // 30% of 40, the query token not counted
  EXPECT_EQ(some_stats.active_per_layer[0], n_);
  EXPECT_EQ(some_stats.active_per_layer[1], 13);
  EXPECT_EQ(all_stats.recomputed, int(b_.size()) - 1);
  EXPECT_EQ(some_stats.reusable, n_ - 1);
  EXPECT_LT(none_stats.flops, some_stats.flops);
  EXPECT_LT(some_stats.flops, all_stats.flops);
  EXPECT_LT(all_stats.flops, all_stats.flops_full) << "A's positions stopped at the check layer";
  std::printf("KL none %.6g, 30%% by V deviation at layer 1 %.6g (flops %.3g of %.3g), all of B %.3g\n", none,
              partial, some_stats.flops, some_stats.flops_full, everything);
}

// ---- FLOPs ----

TEST_F(BlendTest, FlopsByHand) {
  // dim 64, kv_dim 32, hidden 172, 8 heads of 8, 5 layers. Per token per layer: projections
  // 2*64*128 = 16384, output 2*64*64 = 8192, MLP 6*64*172 = 66048; attention 4*8*8*(p+1) = 256*(p+1).
  const double per_token = 16384 + 8192 + 66048;
  EXPECT_EQ(PrefillFlops(config(), 3), 5 * (3 * per_token + 256 * (1 + 2 + 3)));
  EXPECT_EQ(PrefillFlops(config(), 0), 0.0);

  const std::vector<int> prompt = Prompt(3);
  Session full = Full(prompt);
  const std::vector<uint8_t> has_cached = {1, 1, 0};
  Session s(*model_);
  auto only_last = BlendPrefill(s, prompt, Export(full, 0, 3), has_cached, BlendOptions());
  ASSERT_TRUE(only_last.ok()) << only_last.status().ToString();
  EXPECT_EQ(only_last->flops_full, PrefillFlops(config(), 3));
  EXPECT_EQ(only_last->flops, 5 * (per_token + 256 * 3));

  // Check layer 1 dropping both cached positions: layer 0 full, layer 1 projections for all three but the
  // rest for the last, layers 2-4 the last alone.
  BlendOptions o;
  o.check_layers = {1};
  o.select = [](const CheckLayerView&) { return std::vector<int>(); };
  Session t(*model_);
  auto checked = BlendPrefill(t, prompt, Export(full, 0, 3), has_cached, o);
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  EXPECT_EQ(checked->flops, (3 * per_token + 256 * 6) + (3 * 16384 + 8192 + 66048 + 256 * 3) +
                                3 * (per_token + 256 * 3));
  EXPECT_EQ(checked->active_per_layer, (std::vector<int>{3, 1, 1, 1, 1}));
}

// ---- errors ----

TEST_F(BlendTest, BlendPrefillRejectsBadArguments) {
  const std::vector<int> prompt = Prompt(10);
  const int n = int(prompt.size());
  Session full = Full(prompt);
  const std::vector<float> kv = Export(full, 0, n);
  const std::vector<uint8_t> has_cached(size_t(n), 1);

  auto busy = BlendPrefill(full, prompt, kv, has_cached, BlendOptions());
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(full.length(), n);

  const auto expect_invalid = [&](std::span<const float> cached, std::span<const uint8_t> flags,
                                  const BlendOptions& o, const std::string& message) {
    Session s(*model_);
    auto r = BlendPrefill(s, prompt, cached, flags, o);
    ASSERT_FALSE(r.ok()) << message;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
    EXPECT_NE(r.status().message().find(message), std::string::npos) << r.status().message();
    EXPECT_EQ(s.length(), 0);
  };
  expect_invalid(std::span(kv).first(kv.size() - 1), has_cached, BlendOptions(), "cached_kv");
  expect_invalid(kv, std::span(has_cached).first(size_t(n) - 1), BlendOptions(), "has_cached");
  const TokenSelector keep_all = [](const CheckLayerView& v) {
    return std::vector<int>(v.positions.begin(), v.positions.end());
  };
  BlendOptions o;
  o.select = keep_all;
  o.check_layers = {config().n_layers};
  expect_invalid(kv, has_cached, o, "check layer 5 outside");
  o.check_layers = {-1};
  expect_invalid(kv, has_cached, o, "check layer -1 outside");
  o.check_layers = {2, 1};
  expect_invalid(kv, has_cached, o, "strictly ascending");
  o.check_layers = {1};
  o.selected = {2};
  expect_invalid(kv, has_cached, o, "selected positions given with check layers");
  o = BlendOptions();
  o.check_layers = {1};
  expect_invalid(kv, has_cached, o, "without a selector");
  o = BlendOptions();
  o.selected = {3, n};
  expect_invalid(kv, has_cached, o, "selected position 10 outside");
  o = BlendOptions();
  o.check_layers = {0, 2};
  o.select = [](const CheckLayerView& v) {
    return v.check_index == 0 ? std::vector<int>{1, 2} : std::vector<int>{3};  // 3 left at the first check
  };
  expect_invalid(kv, has_cached, o, "selector at layer 2 returned position 3");
  std::vector<int> bad_tokens = prompt;
  bad_tokens[1] = config().vocab_size;
  Session s(*model_);
  EXPECT_EQ(BlendPrefill(s, bad_tokens, kv, has_cached, BlendOptions()).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvtier::refmodel
