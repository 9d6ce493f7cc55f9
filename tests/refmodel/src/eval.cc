#include "kvtier/refmodel/eval.h"

#include <algorithm>
#include <cmath>

namespace kvtier::refmodel {
namespace {

int Argmax(std::span<const float> v) {
  return int(std::max_element(v.begin(), v.end()) - v.begin());  // first of equal maxima
}

// log p(token) under softmax(logits), without materializing the distribution.
float LogProbOf(std::span<const float> logits, int token) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(double(l) - max);
  return float(double(logits[token]) - max - std::log(sum));
}

bool IsAsciiSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view StripAsciiSpace(std::string_view s) {
  while (!s.empty() && IsAsciiSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsAsciiSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Characters as Python's len() counts them: UTF-8 lead bytes.
size_t CountCodepoints(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

Result<std::vector<int>> Greedy(Session& session, std::span<const int> prompt, int max_new_tokens,
                                int stop_token) {
  if (prompt.empty()) return InvalidArgument("Greedy needs a nonempty prompt");
  auto prefill = session.ForwardMany(prompt);
  if (!prefill.ok()) return prefill.status();
  std::span<const float> logits = session.logits();
  std::vector<int> out;
  while (int(out.size()) < max_new_tokens) {
    const int next = Argmax(logits);
    if (next == stop_token) break;
    out.push_back(next);
    if (int(out.size()) == max_new_tokens) break;  // no need to run the last token
    auto r = session.Forward(next);
    if (!r.ok()) return r.status();
    logits = *r;
  }
  return out;
}

void LogSoftmax(std::span<const float> logits, std::span<float> out) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(double(l) - max);
  const double log_sum = std::log(sum);
  for (size_t i = 0; i < logits.size(); ++i) out[i] = float(double(logits[i]) - max - log_sum);
}

double KlDivergence(std::span<const float> log_p, std::span<const float> log_q) {
  double kl = 0;
  for (size_t i = 0; i < log_p.size(); ++i) kl += std::exp(double(log_p[i])) * (double(log_p[i]) - log_q[i]);
  return kl;
}

double ContinuationScores::nll_sum() const {
  double s = 0;
  for (float lp : logprobs) s -= lp;
  return s;
}

double ContinuationScores::perplexity() const {
  return logprobs.empty() ? 1.0 : std::exp(nll_sum() / double(logprobs.size()));
}

double PerplexityResult::perplexity() const { return std::exp(mean_nll()); }

Result<ContinuationScores> ScoreContinuation(Session& session, std::span<const int> tokens,
                                             bool keep_distributions) {
  ContinuationScores s;
  s.vocab_size = session.config().vocab_size;
  if (tokens.empty()) return s;
  const size_t scored = tokens.size() - 1;
  s.logprobs.reserve(scored);
  if (keep_distributions) s.log_softmax.resize(scored * size_t(s.vocab_size));
  auto all = session.ForwardMany(tokens.first(scored));
  if (!all.ok()) return all.status();
  for (size_t i = 0; i < scored; ++i) {
    const std::span<const float> logits = all->subspan(i * s.vocab_size, size_t(s.vocab_size));
    const int target = tokens[i + 1];
    if (target < 0 || target >= s.vocab_size) return InvalidArgument("token " + std::to_string(target) + " outside the vocabulary");
    if (keep_distributions) {
      std::span<float> dist(s.log_softmax.data() + i * s.vocab_size, size_t(s.vocab_size));
      LogSoftmax(logits, dist);
      s.logprobs.push_back(dist[target]);
    } else {
      s.logprobs.push_back(LogProbOf(logits, target));
    }
  }
  return s;
}

Result<PerplexityResult> ScoreFromBos(Session& session, std::span<const int> tokens, int64_t max_tokens) {
  session.Reset();
  const size_t n = max_tokens < 0 ? tokens.size() : std::min(tokens.size(), size_t(max_tokens));
  std::vector<int> inputs = {Tokenizer::kBos};  // token i is scored from the logits after inputs[i]
  inputs.insert(inputs.end(), tokens.begin(), tokens.begin() + n);
  auto scores = ScoreContinuation(session, inputs);
  if (!scores.ok()) return scores.status();
  PerplexityResult res;
  res.nll_sum = scores->nll_sum();
  res.tokens = int64_t(n);
  return res;
}

std::vector<std::string> SplitCorpus(std::string_view text, size_t max_chars) {
  std::vector<std::string> pieces;
  std::string current;
  size_t current_chars = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view para = StripAsciiSpace(text.substr(start, end - start));
    start = end + 2;
    if (para.empty()) continue;
    const size_t para_chars = CountCodepoints(para);
    if (!current.empty() && current_chars + 1 + para_chars > max_chars) {
      pieces.push_back(std::move(current));
      current.clear();
      current_chars = 0;
    }
    if (!current.empty()) {
      current += '\n';
      ++current_chars;
    }
    current += para;
    current_chars += para_chars;
  }
  if (!current.empty()) pieces.push_back(std::move(current));
  return pieces;
}

Result<PerplexityResult> CorpusPerplexity(Session& session, const Tokenizer& tokenizer,
                                          std::span<const std::string> pieces, int64_t max_tokens,
                                          const std::function<void(const PerplexityResult&)>& progress) {
  PerplexityResult total;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (max_tokens >= 0 && total.tokens >= max_tokens) break;
    const std::vector<int> tokens = tokenizer.Encode(pieces[i], /*bos=*/false, /*eos=*/false);
    if (int64_t(tokens.size()) > session.capacity()) {
      return InvalidArgument("corpus piece " + std::to_string(i) + " has " + std::to_string(tokens.size()) +
                             " tokens, more than the context of " + std::to_string(session.capacity()) + " fits");
    }
    const int64_t budget = max_tokens < 0 ? -1 : max_tokens - total.tokens;
    auto r = ScoreFromBos(session, tokens, budget);
    if (!r.ok()) return r.status();
    total.nll_sum += r->nll_sum;
    total.tokens += r->tokens;
    if (progress) progress(total);
  }
  return total;
}

}  // namespace kvtier::refmodel
