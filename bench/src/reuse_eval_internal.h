// Internal to the reuse evaluation (reuse_eval.cc): scoring each method's prefill against full prefill.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/bench/reuse_eval.h"
#include "kvtier/refmodel/eval.h"
#include "kvtier/refmodel/model.h"
#include "kvtier/refmodel/session.h"

namespace kvtier::bench {

// Accumulates, per method and parameter (in first-seen order), the quality of the continuation scored
// behind that method's prefill against the same prompt's full prefill.
class Evaluator {
 public:
  explicit Evaluator(refmodel::Model model) : model_(std::move(model)) {}

  // Prefills `prefill` in full, scores `scored` behind it (the reference) and records the "full" row.
  Status Begin(std::span<const int> prefill, std::span<const int> scored);
  // Scores the reference's `scored` tokens behind `session`, which holds this method's prefill of the same
  // positions, and records it. recomputed/reusable: passage tokens computed / passage tokens in the prefill.
  Status Score(const std::string& method, double param, refmodel::Session& session, int recomputed, int reusable,
               double flops);
  double flops_full() const { return flops_full_; }
  int prefill_tokens() const { return int(prefill_.size()); }
  ReuseEvalReport Finish() const;

 private:
  struct Tally {
    std::string method;
    double param = 0;
    double nll = 0;
    std::vector<double> kl;
    int64_t agree = 0;
    int64_t recomputed = 0, reusable = 0;
    double flops = 0, flops_full = 0;
  };
  Tally& Find(const std::string& method, double param);

  refmodel::Model model_;
  std::vector<int> prefill_, scored_;
  refmodel::ContinuationScores reference_;
  double flops_full_ = 0;
  std::vector<Tally> tallies_;
  int prompts_ = 0;
  int64_t prompt_tokens_ = 0;
};

}  // namespace kvtier::bench
