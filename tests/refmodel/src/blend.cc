// BlendPrefill: a prefill from cached KV that recomputes a shrinking set of positions, layer by layer.
//
// Unlike ForwardMany (blocks of tokens outermost, each block through all layers), the layer loop is
// outermost here: every active position's layer l runs before any position's layer l + 1, because the
// check-layer selection needs the fresh K/V of all active positions at once. Attention at layer l only
// reads layer-l KV of positions 0..p, so the order changes nothing for a position's result: with every
// position active the result is ForwardMany's, bit for bit (same kernels on the same row values).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kvtier/refmodel/blend.h"

namespace kvtier::refmodel {
namespace {

double ProjectionFlops(const Config& c) { return 2.0 * c.dim * (c.dim + 2.0 * c.kv_dim()); }

// Attention at position p, output projection and MLP: what a selected position adds to its projections.
double RestFlops(const Config& c, int p) {
  return 2.0 * 2.0 * c.n_heads * c.head_size() * (p + 1.0) + 2.0 * c.dim * c.dim + 2.0 * 3.0 * c.dim * c.hidden_dim;
}

std::vector<int> SortedUnique(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

Status ValidateInputs(const Session& session, std::span<const int> tokens, std::span<const float> cached_kv,
                      std::span<const uint8_t> has_cached) {
  const Config& c = session.config();
  if (session.length() != 0) {
    return FailedPrecondition("BlendPrefill needs an empty session, this one holds " +
                              std::to_string(session.length()) + " positions");
  }
  if (tokens.empty()) return InvalidArgument("BlendPrefill of no tokens");
  if (tokens.size() > size_t(c.seq_len)) {
    return Status(StatusCode::kOutOfRange, "BlendPrefill of " + std::to_string(tokens.size()) +
                                               " tokens does not fit " + std::to_string(c.seq_len) + " positions");
  }
  for (int token : tokens) {
    if (token < 0 || token >= c.vocab_size) {
      return InvalidArgument("token " + std::to_string(token) + " outside the vocabulary of " +
                             std::to_string(c.vocab_size));
    }
  }
  const size_t want = tokens.size() * session.KvFloatsPerToken();
  if (cached_kv.size() != want) {
    return InvalidArgument("cached_kv holds " + std::to_string(cached_kv.size()) + " floats, " +
                           std::to_string(tokens.size()) + " tokens need " + std::to_string(want));
  }
  if (has_cached.size() != tokens.size()) {
    return InvalidArgument("has_cached has " + std::to_string(has_cached.size()) + " entries for " +
                           std::to_string(tokens.size()) + " tokens");
  }
  return Status::Ok();
}

}  // namespace

Status BlendOptions::Validate(const Config& config, int num_tokens) const {
  for (size_t i = 0; i < check_layers.size(); ++i) {
    const int l = check_layers[i];
    if (l < 0 || l >= config.n_layers) {
      return InvalidArgument("check layer " + std::to_string(l) + " outside [0, " + std::to_string(config.n_layers) +
                             ")");
    }
    if (i > 0 && l <= check_layers[i - 1]) return InvalidArgument("check layers must be strictly ascending");
  }
  if (!check_layers.empty() && !select) return InvalidArgument("check layers given without a selector");
  if (!check_layers.empty() && !selected.empty()) {
    return InvalidArgument("selected positions given with check layers (the selector picks them)");
  }
  for (int p : selected) {
    if (p < 0 || p >= num_tokens) {
      return InvalidArgument("selected position " + std::to_string(p) + " outside [0, " + std::to_string(num_tokens) +
                             ")");
    }
  }
  return Status::Ok();
}

// One BlendPrefill: owns the hidden states and queries of all positions while the layers run.
class BlendRunner {
 public:
  BlendRunner(Session& session, std::span<const int> tokens, std::span<const uint8_t> has_cached,
              const BlendOptions& options)
      : s_(session), c_(session.config()), options_(options), n_(int(tokens.size())) {
    must_.resize(size_t(n_));
    for (int p = 0; p < n_; ++p) must_[size_t(p)] = has_cached[size_t(p)] == 0 ? 1 : 0;
    hidden_.resize(size_t(n_) * c_.dim);
    q_.resize(size_t(n_) * c_.dim);
    for (int p = 0; p < n_; ++p) {
      std::memcpy(Hidden(p), s_.model_.token_embedding(tokens[size_t(p)]), sizeof(float) * c_.dim);
    }
  }

  Result<BlendStats> Run(std::span<const float> cached_kv) {
    LoadCache(cached_kv);
    BlendStats stats;
    stats.flops_full = PrefillFlops(c_, n_);
    for (uint8_t m : must_) stats.reusable += m ? 0 : 1;
    std::vector<int> active = InitialActive();
    size_t next_check = 0;
    for (int l = 0; l < c_.n_layers; ++l) {
      const bool check = next_check < options_.check_layers.size() && options_.check_layers[next_check] == l;
      // The cached rows the fresh ones replace, for the selector; taken before the projection overwrites them.
      const std::vector<float> cached_key = check ? Gather(s_.cache_[size_t(l)].key, active) : std::vector<float>();
      const std::vector<float> cached_value =
          check ? Gather(s_.cache_[size_t(l)].value, active) : std::vector<float>();
      ProjectRows(l, active);
      stats.flops += ProjectionFlops(c_) * double(active.size());
      if (check) {
        if (Status st = Select(l, int(next_check++), cached_key, cached_value, active); !st.ok()) {
          s_.Reset();
          return st;
        }
      }
      FinishRows(l, active);
      for (int p : active) stats.flops += RestFlops(c_, p);
      stats.active_per_layer.push_back(int(active.size()));
    }
    for (int p : active) stats.recomputed += must_[size_t(p)] ? 0 : 1;
    ClassifyLast(!active.empty() && active.back() == n_ - 1);
    return stats;
  }

 private:
  float* Hidden(int p) { return hidden_.data() + size_t(p) * c_.dim; }
  float* Query(int p) { return q_.data() + size_t(p) * c_.dim; }

  // Takes the cached KV as InjectKv does; rows of positions without cached KV become zeros, so that what a
  // selector sees as "cached" for them does not depend on what the caller left there.
  void LoadCache(std::span<const float> cached_kv) {
    Status st = s_.InjectKv(0, cached_kv, n_, KeyForm::kPostRope);
    (void)st;  // sizes and range were validated
    const size_t row = size_t(c_.kv_dim());
    for (Session::LayerCache& lc : s_.cache_) {
      for (int p = 0; p < n_; ++p) {
        if (!must_[size_t(p)]) continue;
        std::fill_n(&lc.key[size_t(p) * row], row, 0.0f);
        std::fill_n(&lc.key_pre[size_t(p) * row], row, 0.0f);
        std::fill_n(&lc.value[size_t(p) * row], row, 0.0f);
      }
    }
  }

  std::vector<int> InitialActive() const {
    std::vector<int> active;
    if (!options_.check_layers.empty()) {
      for (int p = 0; p < n_; ++p) active.push_back(p);
      return active;
    }
    active = options_.selected;
    for (int p = 0; p < n_; ++p) {
      if (must_[size_t(p)]) active.push_back(p);
    }
    return SortedUnique(std::move(active));
  }

  static std::span<const int> Block(const std::vector<int>& positions, size_t b) {
    return std::span(positions).subspan(b, std::min(positions.size() - b, size_t(Session::kBlock)));
  }

  // Q/K/V of `positions` at layer l in blocks of kBlock rows; K/V land in the cache, Q in q_.
  void ProjectRows(int l, const std::vector<int>& positions) {
    for (size_t b = 0; b < positions.size(); b += Session::kBlock) {
      const std::span<const int> block = Block(positions, b);
      for (size_t r = 0; r < block.size(); ++r) std::copy_n(Hidden(block[r]), c_.dim, &s_.x_[r * c_.dim]);
      s_.ProjectQkv(l, block, s_.q_.data());
      for (size_t r = 0; r < block.size(); ++r) std::copy_n(&s_.q_[r * c_.dim], c_.dim, Query(block[r]));
    }
  }

  // Attention, output projection and MLP of layer l for `positions`, whose Q/K/V are computed.
  void FinishRows(int l, const std::vector<int>& positions) {
    for (size_t b = 0; b < positions.size(); b += Session::kBlock) {
      const std::span<const int> block = Block(positions, b);
      for (size_t r = 0; r < block.size(); ++r) {
        std::copy_n(Hidden(block[r]), c_.dim, &s_.x_[r * c_.dim]);
        std::copy_n(Query(block[r]), c_.dim, &s_.q_[r * c_.dim]);
      }
      s_.AttendAndFeedForward(l, block, s_.q_.data());
      for (size_t r = 0; r < block.size(); ++r) std::copy_n(&s_.x_[r * c_.dim], c_.dim, Hidden(block[r]));
    }
  }

  // Rows of `positions` from one of the cache's [seq_len][kv_dim] arrays.
  std::vector<float> Gather(const std::vector<float>& from, const std::vector<int>& positions) const {
    const size_t row = size_t(c_.kv_dim());
    std::vector<float> out(positions.size() * row);
    for (size_t i = 0; i < positions.size(); ++i) std::copy_n(&from[size_t(positions[i]) * row], row, &out[i * row]);
    return out;
  }

  // At check layer l, whose Q/K/V of `active` are computed (the cache holds the fresh K/V), lets the
  // selector shrink `active`; positions without cached KV stay whatever it says.
  Status Select(int l, int index, std::span<const float> cached_key, std::span<const float> cached_value,
                std::vector<int>& active) {
    const Session::LayerCache& lc = s_.cache_[size_t(l)];
    const std::vector<float> fresh_key = Gather(lc.key, active), fresh_value = Gather(lc.value, active);
    std::vector<uint8_t> must(active.size());
    for (size_t i = 0; i < active.size(); ++i) must[i] = must_[size_t(active[i])];
    CheckLayerView view;
    view.layer = l;
    view.check_index = index;
    view.positions = active;
    view.fresh_key = fresh_key;
    view.cached_key = cached_key;
    view.fresh_value = fresh_value;
    view.cached_value = cached_value;
    view.kv_dim = c_.kv_dim();
    view.must_recompute = must;
    std::vector<int> keep = options_.select(view);
    std::vector<uint8_t> in_view(size_t(n_), 0);
    for (int p : active) in_view[size_t(p)] = 1;
    for (int p : keep) {
      if (p < 0 || p >= n_ || !in_view[size_t(p)]) {
        return InvalidArgument("selector at layer " + std::to_string(l) + " returned position " + std::to_string(p) +
                               ", which is not among the active positions it was shown");
      }
    }
    for (size_t i = 0; i < active.size(); ++i) {
      if (must[i]) keep.push_back(active[i]);
    }
    active = SortedUnique(std::move(keep));
    return Status::Ok();
  }

  void ClassifyLast(bool last_active) {
    s_.length_ = n_;
    s_.logits_valid_ = last_active;
    if (!last_active) return;
    const size_t vocab = size_t(c_.vocab_size);
    if (s_.logits_.size() < vocab) s_.logits_.resize(vocab);
    std::copy_n(Hidden(n_ - 1), c_.dim, s_.x_.data());
    s_.Classify(1, s_.logits_.data());
    s_.last_logits_ = 0;
  }

  Session& s_;
  const Config& c_;
  const BlendOptions& options_;
  const int n_;
  std::vector<uint8_t> must_;  // [position]: 1 where no KV was cached
  std::vector<float> hidden_;  // [position][dim]: residual stream, current for active positions
  std::vector<float> q_;       // [position][dim]: rotated queries of the layer being run
};

Result<BlendStats> BlendPrefill(Session& session, std::span<const int> tokens, std::span<const float> cached_kv,
                                std::span<const uint8_t> has_cached, const BlendOptions& options) {
  if (Status st = ValidateInputs(session, tokens, cached_kv, has_cached); !st.ok()) return st;
  if (Status st = options.Validate(session.config(), int(tokens.size())); !st.ok()) return st;
  BlendRunner runner(session, tokens, has_cached, options);
  return runner.Run(cached_kv);
}

double PrefillFlops(const Config& config, int num_tokens) {
  double per_layer = 0;
  for (int p = 0; p < num_tokens; ++p) per_layer += ProjectionFlops(config) + RestFlops(config, p);
  return per_layer * config.n_layers;
}

}  // namespace kvtier::refmodel
