// Evaluation helpers on top of Session: greedy decoding, teacher-forced scoring, perplexity, and the
// corpus split the reference numbers in tests/data/MODELS.md were measured with.
//
// Convention for scoring a continuation behind KV that came from elsewhere (the store, a codec):
// the logits for the first continuation token come from the last prompt token. So the caller injects
// the KV of prompt[0 .. n-1) (InjectKv), then calls ScoreContinuation with
// {prompt[n-1], continuation...}; entry i of the result scores tokens[i + 1].
//
// Thread safety: free functions; each mutates only the Session it is given.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/refmodel/session.h"
#include "kvtier/refmodel/tokenizer.h"

namespace kvtier::refmodel {

// Feeds `prompt` at session.length(), then appends the argmax token until `stop_token` comes up or
// max_new_tokens were generated. Returns the generated tokens without the stop token. The prompt must
// be nonempty (the first generated token needs logits).
Result<std::vector<int>> Greedy(Session& session, std::span<const int> prompt, int max_new_tokens,
                                int stop_token);

// log_softmax of `logits` into `out` (same size), accumulated in double.
void LogSoftmax(std::span<const float> logits, std::span<float> out);
// KL(p || q) in nats for two log-probability vectors of the same size.
double KlDivergence(std::span<const float> log_p, std::span<const float> log_q);

struct ContinuationScores {
  int vocab_size = 0;
  std::vector<float> logprobs;     // [i] = log p(tokens[i + 1] | everything before it)
  std::vector<float> log_softmax;  // [i * vocab_size + v]; filled only when asked for

  std::span<const float> distribution(size_t i) const {
    return std::span<const float>(log_softmax).subspan(i * vocab_size, vocab_size);
  }
  double nll_sum() const;
  double perplexity() const;
};

// Teacher-forced scoring: feeds tokens[0 .. n) at session.length() and scores tokens[1 .. n) (see the
// convention above). With keep_distributions, also keeps each position's full log-softmax.
Result<ContinuationScores> ScoreContinuation(Session& session, std::span<const int> tokens,
                                             bool keep_distributions = false);

struct PerplexityResult {
  double nll_sum = 0;   // nats
  int64_t tokens = 0;   // scored tokens
  double mean_nll() const { return tokens > 0 ? nll_sum / double(tokens) : 0.0; }
  double perplexity() const;
};

// Resets the session and scores `tokens` (text tokens, no BOS) behind BOS: every token is scored,
// the first one from BOS's logits. At most max_tokens are scored (negative: all).
Result<PerplexityResult> ScoreFromBos(Session& session, std::span<const int> tokens, int64_t max_tokens = -1);

// The corpus split behind the reference numbers (it reproduces their 386,072 tokens exactly): cut the
// text at every "\n\n", strip each paragraph of ASCII whitespace (the corpus has ~970 trailing
// spaces before line ends), drop empty ones, and greedily join consecutive paragraphs with a single
// "\n" while the piece stays within max_chars characters (Unicode codepoints, as Python's len()
// counts, separators included). A paragraph longer than max_chars is a piece of its own.
std::vector<std::string> SplitCorpus(std::string_view text, size_t max_chars = 900);

// Perplexity of the pieces, each encoded (no EOS) and scored from BOS, in order, stopping after
// max_tokens scored tokens (negative: all). `progress`, when set, is called after each piece with the
// running total. INVALID_ARGUMENT when a piece does not fit the context.
Result<PerplexityResult> CorpusPerplexity(Session& session, const Tokenizer& tokenizer,
                                          std::span<const std::string> pieces, int64_t max_tokens = -1,
                                          const std::function<void(const PerplexityResult&)>& progress = {});

}  // namespace kvtier::refmodel
