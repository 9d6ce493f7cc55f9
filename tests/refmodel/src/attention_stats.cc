// PrefillWithAttentionStats: an ordinary ForwardMany with an observer on the attention probabilities.
#include <algorithm>
#include <string>
#include <vector>

#include "kvtier/refmodel/blend.h"

namespace kvtier::refmodel {

// Installs the observer for one ForwardMany and accumulates the per-chunk sums in double.
class AttentionProbe {
 public:
  AttentionProbe(Session& session, int base, int num_tokens, std::span<const ChunkSpan> chunks)
      : session_(session), chunks_(chunks.begin(), chunks.end()), chunk_of_(size_t(num_tokens), -1), base_(base) {
    const Config& c = session.config();
    for (size_t i = 0; i < chunks_.size(); ++i) {
      for (int p = chunks_[i].begin; p < chunks_[i].end; ++p) chunk_of_[size_t(p - base)] = int(i);
      Sums& s = sums_.emplace_back();
      s.layer_ratio.assign(size_t(c.n_layers), 0.0);
      s.token_ratio.assign(size_t(chunks_[i].end - chunks_[i].begin), 0.0);
      s.context_mass.assign(i, 0.0);
    }
  }

  Result<std::vector<ChunkAttention>> Run(std::span<const int> tokens) {
    session_.attention_observer_ = [this](int l, int pos, int h, std::span<const float> p) { Observe(l, pos, h, p); };
    auto r = session_.ForwardMany(tokens);
    session_.attention_observer_ = nullptr;
    if (!r.ok()) return r.status();
    return Finish();
  }

 private:
  struct Sums {
    std::vector<double> layer_ratio;   // [n_layers], summed over tokens and heads
    std::vector<double> token_ratio;   // [tokens], summed over layers and heads
    std::vector<double> context_mass;  // [earlier chunks], summed over tokens, layers, heads
    double inter = 0;
  };

  static double Sum(std::span<const float> p, int begin, int end) {
    double s = 0;
    for (int i = begin; i < end; ++i) s += p[size_t(i)];
    return s;
  }

  void Observe(int l, int pos, int, std::span<const float> p) {
    const int ci = chunk_of_[size_t(pos - base_)];
    if (ci < 0) return;
    const ChunkSpan chunk = chunks_[size_t(ci)];
    Sums& s = sums_[size_t(ci)];
    const double inter = Sum(p, 1, chunk.begin);
    const double intra = Sum(p, std::max(chunk.begin, 1), pos + 1);
    const double ratio = inter + intra > 0 ? inter / (inter + intra) : 0.0;
    s.layer_ratio[size_t(l)] += ratio;
    s.token_ratio[size_t(pos - chunk.begin)] += ratio;
    s.inter += inter;
    for (int j = 0; j < ci; ++j) {
      const ChunkSpan e = chunks_[size_t(j)];
      s.context_mass[size_t(j)] += Sum(p, std::max(e.begin, 1), std::min(e.end, chunk.begin));
    }
  }

  std::vector<ChunkAttention> Finish() const {
    const Config& c = session_.config();
    std::vector<ChunkAttention> out;
    for (size_t i = 0; i < chunks_.size(); ++i) {
      const Sums& s = sums_[i];
      ChunkAttention& a = out.emplace_back();
      a.chunk = chunks_[i];
      const double tokens = double(chunks_[i].end - chunks_[i].begin);
      double impact = 0;
      for (double v : s.layer_ratio) {
        a.layer_context_impact.push_back(float(v / (tokens * c.n_heads)));
        impact += v / (tokens * c.n_heads);
      }
      a.context_impact = float(impact / c.n_layers);
      for (double v : s.token_ratio) a.token_context_attention.push_back(float(v / (double(c.n_layers) * c.n_heads)));
      for (double m : s.context_mass) a.context_attention.push_back(s.inter > 0 ? float(m / s.inter) : 0.0f);
    }
    return out;
  }

  Session& session_;
  std::vector<ChunkSpan> chunks_;
  std::vector<int> chunk_of_;  // [position - base_]: index into chunks_, -1 outside every chunk
  std::vector<Sums> sums_;
  int base_;
};

namespace {

Status ValidateChunks(std::span<const ChunkSpan> chunks, int base, int num_tokens) {
  int prev_end = base;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ChunkSpan& c = chunks[i];
    const std::string name = "chunk " + std::to_string(i) + " [" + std::to_string(c.begin) + ", " +
                             std::to_string(c.end) + ")";
    if (c.begin >= c.end) return InvalidArgument(name + " is empty");
    if (c.begin < prev_end) {
      return InvalidArgument(name + (i == 0 ? " starts before the first new position " + std::to_string(base)
                                            : " overlaps or precedes the chunk before it (chunks must ascend)"));
    }
    if (c.end > base + num_tokens) {
      return InvalidArgument(name + " ends after the last new position " + std::to_string(base + num_tokens - 1));
    }
    prev_end = c.end;
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<ChunkAttention>> PrefillWithAttentionStats(Session& session, std::span<const int> tokens,
                                                              std::span<const ChunkSpan> chunks) {
  const int base = session.length();
  const int n = int(std::min(tokens.size(), size_t(session.capacity())));
  if (Status s = ValidateChunks(chunks, base, n); !s.ok()) return s;
  AttentionProbe probe(session, base, n, chunks);
  return probe.Run(tokens);
}

}  // namespace kvtier::refmodel
