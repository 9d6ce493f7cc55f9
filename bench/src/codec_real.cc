// Real KV: stories260K on held-out TinyStories passages. Each passage is BOS + text; the KV of its
// first prefix_tokens positions goes through a codec (as fp16, post-RoPE keys), then the next token
// and the continuation are scored teacher-forced behind it and compared with the exact fp32 KV.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "codec_variants.h"
#include "kvtier/codec/convert.h"
#include "kvtier/refmodel/eval.h"
#include "kvtier/refmodel/model.h"
#include "kvtier/refmodel/session.h"
#include "kvtier/refmodel/tokenizer.h"
#include "test_model.h"

namespace kvtier::bench::internal {
namespace {

using refmodel::KeyForm;
using refmodel::Session;

// Consecutive paragraphs joined until they give `need` tokens (BOS included); passages do not overlap.
std::vector<std::vector<int>> MakePassages(const std::string& corpus, const refmodel::Tokenizer& tokenizer,
                                           size_t need) {
  std::vector<std::vector<int>> out;
  std::string text;
  size_t start = 0;
  while (start < corpus.size()) {
    size_t end = corpus.find("\n\n", start);
    if (end == std::string::npos) end = corpus.size();
    if (end > start) text += (text.empty() ? "" : "\n\n") + corpus.substr(start, end - start);
    start = end + 2;
    std::vector<int> tokens = tokenizer.Encode(text, /*bos=*/true, /*eos=*/false);
    if (tokens.size() >= need) {
      tokens.resize(need);
      out.push_back(std::move(tokens));
      text.clear();
    }
  }
  return out;
}

struct Passage {
  std::vector<int> tokens;        // BOS + text, prefix + 1 + continuation long
  std::vector<float> kv;          // exact fp32 KV of the prefix positions, chunk layout
  std::vector<std::byte> kv_fp16; // the same as fp16: what the codecs see
  refmodel::ContinuationScores exact;
};

struct Setup {
  refmodel::Model model;
  codec::KvShape shape;
  std::vector<Passage> eval;
  std::vector<Passage> profile_samples;
};

Status Prefill(Session& session, const CodecEvalOptions& o, const codec::KvShape& shape, Passage& p) {
  session.Reset();
  for (int i = 0; i < o.prefix_tokens; ++i) {
    auto logits = session.Forward(p.tokens[i]);
    if (!logits.ok()) return logits.status();
  }
  p.kv.resize(shape.NumValues());
  KVTIER_RETURN_IF_ERROR(session.ExportKv(0, o.prefix_tokens, KeyForm::kPostRope, p.kv));
  p.kv_fp16.resize(shape.RawBytes());
  codec::FloatToElements(p.kv, DType::kFp16, p.kv_fp16);
  return Status::Ok();
}

std::span<const int> Scored(const CodecEvalOptions& o, const Passage& p) {
  return std::span<const int>(p.tokens).subspan(o.prefix_tokens, o.continuation_tokens + 1);
}

Result<Setup> Prepare(const CodecEvalOptions& o, std::ostream& progress) {
  auto loaded = LoadTestModel(o.data_dir);
  if (!loaded.ok()) return loaded.status();
  const refmodel::Model* model = &loaded->model;
  const refmodel::Tokenizer* tokenizer = &loaded->tokenizer;
  const std::string* corpus = &loaded->corpus;
  const size_t need = static_cast<size_t>(o.prefix_tokens + 1 + o.continuation_tokens);
  if (need > static_cast<size_t>(model->config().seq_len)) {
    return InvalidArgument("prefix + continuation exceed the model's context of " +
                           std::to_string(model->config().seq_len));
  }
  auto all = MakePassages(*corpus, *tokenizer, need);
  const size_t wanted = static_cast<size_t>(o.passages + o.profile_passages);
  if (all.size() < wanted) {
    return InvalidArgument("the corpus gives " + std::to_string(all.size()) + " passages of " + std::to_string(need) +
                           " tokens, fewer than the " + std::to_string(wanted) + " asked for");
  }
  const refmodel::Config& c = model->config();
  Setup setup{*model, {uint32_t(c.n_layers), uint32_t(c.n_kv_heads), uint32_t(c.head_size()),
                       uint32_t(o.prefix_tokens), DType::kFp16}, {}, {}};
  Session session(*model);
  // Evenly spread over the corpus; every (wanted / profile_passages)-th one builds the shared profile.
  const size_t stride_profile = wanted / static_cast<size_t>(o.profile_passages);
  for (size_t i = 0; i < wanted; ++i) {
    Passage p;
    p.tokens = std::move(all[i * all.size() / wanted]);
    KVTIER_RETURN_IF_ERROR(Prefill(session, o, setup.shape, p));
    const bool for_profile = i % stride_profile == stride_profile - 1 &&
                             setup.profile_samples.size() < static_cast<size_t>(o.profile_passages);
    if (for_profile) {
      setup.profile_samples.push_back(std::move(p));
      continue;
    }
    auto exact = refmodel::ScoreContinuation(session, Scored(o, p), /*keep_distributions=*/true);
    if (!exact.ok()) return exact.status();
    p.exact = std::move(exact).value();
    setup.eval.push_back(std::move(p));
  }
  progress << "real KV: " << setup.eval.size() << " passages x " << o.prefix_tokens << " tokens through the codecs, "
           << o.continuation_tokens << " scored after each; " << setup.profile_samples.size()
           << " others build the shared profile\n";
  return setup;
}

struct Quality {
  double nll = 0, exact_nll = 0;
  int64_t tokens = 0, agree = 0;
  std::vector<double> kl;
};

int Argmax(std::span<const float> v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); }

Status ScorePassage(const CodecEvalOptions& o, Session& session, const Passage& p, std::span<const std::byte> decoded,
                    std::vector<float>& scratch, Quality& q) {
  scratch.resize(p.kv.size());
  codec::ElementsToFloat(decoded, DType::kFp16, scratch);
  session.Reset();
  KVTIER_RETURN_IF_ERROR(session.InjectKv(0, scratch, o.prefix_tokens, KeyForm::kPostRope));
  auto scores = refmodel::ScoreContinuation(session, Scored(o, p), /*keep_distributions=*/true);
  if (!scores.ok()) return scores.status();
  for (size_t i = 0; i < scores->logprobs.size(); ++i) {
    q.nll -= scores->logprobs[i];
    q.exact_nll -= p.exact.logprobs[i];
    q.kl.push_back(refmodel::KlDivergence(p.exact.distribution(i), scores->distribution(i)));
    q.agree += Argmax(p.exact.distribution(i)) == Argmax(scores->distribution(i));
    ++q.tokens;
  }
  return Status::Ok();
}

void Summarize(Quality& q, uint64_t encoded_bytes, uint64_t values, CodecEvalRow& row) {
  row.bits_per_value = 8.0 * static_cast<double>(encoded_bytes) / static_cast<double>(values);
  row.ppl_delta_rel = std::exp((q.nll - q.exact_nll) / static_cast<double>(q.tokens)) - 1.0;
  double sum = 0;
  for (double k : q.kl) sum += k;
  row.kl_mean = sum / static_cast<double>(q.kl.size());
  std::sort(q.kl.begin(), q.kl.end());
  row.kl_p95 = q.kl[std::min(q.kl.size() - 1, static_cast<size_t>(0.95 * static_cast<double>(q.kl.size())))];
  row.greedy_agreement = static_cast<double>(q.agree) / static_cast<double>(q.tokens);
}

Result<codec::ModelProfile> BuildProfile(const Setup& setup) {
  std::vector<codec::KvView> views;
  for (const Passage& p : setup.profile_samples) views.push_back({setup.shape, p.kv_fp16, {}});
  return codec::ModelProfile::Build(views);
}

}  // namespace

Status EvaluateReal(const CodecEvalOptions& o, codec::Executor* executor, std::ostream& progress,
                    CodecEvalReport& report) {
  auto setup = Prepare(o, progress);
  if (!setup.ok()) return setup.status();
  auto profile = BuildProfile(*setup);
  if (!profile.ok()) return profile.status();
  Session session(setup->model);
  std::vector<float> scratch;
  double exact_nll = 0;
  int64_t scored = 0;
  for (const Passage& p : setup->eval) {
    for (float lp : p.exact.logprobs) exact_nll -= lp;
    scored += static_cast<int64_t>(p.exact.logprobs.size());
  }
  report.exact_perplexity = std::exp(exact_nll / static_cast<double>(scored));
  report.scored_tokens = scored;

  for (const CodecVariant& v : EvaluatedVariants()) {
    const codec::ModelProfile* shared = v.shared_profile ? &*profile : nullptr;
    CodecEvalRow row = RowFor(v, "real");
    Quality q;
    uint64_t encoded = 0;
    for (const Passage& p : setup->eval) {
      auto rt = EncodeDecode({setup->shape, p.kv_fp16, {}}, v.options, shared);
      if (!rt.ok()) return Status(rt.status().code(), row.profile + " " + row.variant + ": " + rt.status().message());
      encoded += rt->encoded_bytes;
      KVTIER_RETURN_IF_ERROR(ScorePassage(o, session, p, rt->decoded, scratch, q));
    }
    Summarize(q, encoded, setup->shape.NumValues() * setup->eval.size(), row);
    const codec::KvView first{setup->shape, setup->eval.front().kv_fp16, {}};
    KVTIER_RETURN_IF_ERROR(FillSpeeds(first, v, shared, executor, o.min_seconds, row));
    progress << "  real " << row.profile << " " << row.variant << (row.level ? " L" + std::to_string(row.level) : "")
             << ": " << row.bits_per_value << " bits/value, perplexity " << (row.ppl_delta_rel >= 0 ? "+" : "")
             << 100 * row.ppl_delta_rel << "%\n";
    report.rows.push_back(std::move(row));
  }
  return Status::Ok();
}

}  // namespace kvtier::bench::internal
