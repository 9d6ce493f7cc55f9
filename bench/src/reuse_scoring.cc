#include <algorithm>
#include <cmath>

#include "kvtier/refmodel/blend.h"
#include "reuse_eval_internal.h"

namespace kvtier::bench {
namespace {

int Argmax(std::span<const float> v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); }

double Percentile95(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(0.95 * double(v.size())))];
}

}  // namespace

Status Evaluator::Begin(std::span<const int> prefill, std::span<const int> scored) {
  prefill_.assign(prefill.begin(), prefill.end());
  scored_.assign(scored.begin(), scored.end());
  refmodel::Session s(model_);
  if (auto r = s.ForwardMany(prefill_); !r.ok()) return r.status();
  auto ref = refmodel::ScoreContinuation(s, scored_, /*keep_distributions=*/true);
  if (!ref.ok()) return ref.status();
  reference_ = std::move(ref).value();
  flops_full_ = refmodel::PrefillFlops(model_.config(), int(prefill_.size()));
  ++prompts_;
  prompt_tokens_ += int64_t(prefill_.size()) + 1;
  s.Reset();
  if (auto r = s.ForwardMany(prefill_); !r.ok()) return r.status();
  return Score("full", 0, s, int(prefill_.size()) - 1, int(prefill_.size()) - 1, flops_full_);
}

Evaluator::Tally& Evaluator::Find(const std::string& method, double param) {
  for (Tally& t : tallies_) {
    if (t.method == method && t.param == param) return t;
  }
  tallies_.push_back(Tally{method, param, 0, {}, 0, 0, 0, 0, 0});
  return tallies_.back();
}

Status Evaluator::Score(const std::string& method, double param, refmodel::Session& session, int recomputed,
                        int reusable, double flops) {
  if (session.length() != int(prefill_.size())) {
    return Internal(method + " left " + std::to_string(session.length()) + " positions prefilled, not " +
                    std::to_string(prefill_.size()));
  }
  auto scores = refmodel::ScoreContinuation(session, scored_, /*keep_distributions=*/true);
  if (!scores.ok()) return scores.status();
  Tally& t = Find(method, param);
  for (size_t i = 0; i < scores->logprobs.size(); ++i) {
    t.nll -= scores->logprobs[i];
    t.kl.push_back(refmodel::KlDivergence(reference_.distribution(i), scores->distribution(i)));
    t.agree += Argmax(reference_.distribution(i)) == Argmax(scores->distribution(i));
  }
  t.recomputed += recomputed;
  t.reusable += reusable;
  t.flops += flops;
  t.flops_full += flops_full_;
  return Status::Ok();
}

ReuseEvalReport Evaluator::Finish() const {
  ReuseEvalReport report;
  report.prompts = prompts_;
  report.mean_prompt_tokens = prompts_ > 0 ? double(prompt_tokens_) / prompts_ : 0;
  double naive_kl = 0;
  for (const Tally& t : tallies_) {
    ReuseMethodRow row;
    row.method = t.method;
    row.param = t.param;
    const double n = double(std::max<size_t>(1, t.kl.size()));
    double kl_sum = 0;
    for (double k : t.kl) kl_sum += k;
    row.kl_mean = kl_sum / n;
    row.kl_p95 = Percentile95(t.kl);
    row.ppl = std::exp(t.nll / n);
    row.greedy_agreement = double(t.agree) / n;
    row.recompute_frac = t.reusable > 0 ? double(t.recomputed) / double(t.reusable) : 0;
    row.flops_rel = t.flops_full > 0 ? t.flops / t.flops_full : 0;
    if (t.method == "naive") naive_kl = row.kl_mean;
    if (t.method == "full") report.scored_tokens = int64_t(t.kl.size());
    report.rows.push_back(row);
  }
  for (ReuseMethodRow& row : report.rows) row.gap_closed = naive_kl > 0 ? 1.0 - row.kl_mean / naive_kl : 0;
  return report;
}

}  // namespace kvtier::bench
