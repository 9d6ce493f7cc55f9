#include "kvtier/refmodel/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kvtier/refmodel/rope.h"
#include "kernels.h"

namespace kvtier::refmodel {

Session::Session(Model model) : model_(std::move(model)) {
  const Config& c = model_.config();
  const size_t rows = size_t(c.seq_len) * c.kv_dim();
  cache_.resize(c.n_layers);
  for (LayerCache& lc : cache_) {
    lc.key.assign(rows, 0.0f);
    lc.key_pre.assign(rows, 0.0f);
    lc.value.assign(rows, 0.0f);
  }
  x_.resize(size_t(kBlock) * c.dim);
  xb_.resize(size_t(kBlock) * c.dim);
  xb2_.resize(size_t(kBlock) * c.dim);
  q_.resize(size_t(kBlock) * c.dim);
  k_.resize(size_t(kBlock) * c.kv_dim());
  v_.resize(size_t(kBlock) * c.kv_dim());
  hb_.resize(size_t(kBlock) * c.hidden_dim);
  hb2_.resize(size_t(kBlock) * c.hidden_dim);
  att_.resize(c.seq_len);
}

std::span<const float> Session::logits() const {
  if (!logits_valid_) return {};
  return std::span<const float>(logits_).subspan(last_logits_, size_t(config().vocab_size));
}

void Session::Reset() {
  length_ = 0;
  logits_valid_ = false;
}

Status Session::Truncate(int n) {
  if (n < 0 || n > length_) {
    return InvalidArgument("Truncate(" + std::to_string(n) + ") outside [0, length " + std::to_string(length_) + "]");
  }
  length_ = n;
  logits_valid_ = false;
  return Status::Ok();
}

Result<std::span<const float>> Session::Forward(int token) { return ForwardMany(std::span<const int>(&token, 1)); }

Result<std::span<const float>> Session::ForwardMany(std::span<const int> tokens) {
  const Config& c = config();
  for (int token : tokens) {
    if (token < 0 || token >= c.vocab_size) {
      return InvalidArgument("token " + std::to_string(token) + " outside the vocabulary of " +
                             std::to_string(c.vocab_size));
    }
  }
  if (tokens.size() > size_t(c.seq_len - length_)) {
    return Status(StatusCode::kOutOfRange, "context full: " + std::to_string(tokens.size()) + " tokens after " +
                                               std::to_string(length_) + " do not fit " +
                                               std::to_string(c.seq_len) + " positions");
  }
  const size_t vocab = size_t(c.vocab_size);
  if (logits_.size() < tokens.size() * vocab) logits_.resize(tokens.size() * vocab);
  for (size_t b = 0; b < tokens.size(); b += kBlock) {
    const size_t n = std::min(tokens.size() - b, size_t(kBlock));
    RunBlock(tokens.subspan(b, n), logits_.data() + b * vocab);
  }
  if (tokens.empty()) return std::span<const float>();
  last_logits_ = (tokens.size() - 1) * vocab;
  logits_valid_ = true;
  return std::span<const float>(logits_.data(), tokens.size() * vocab);
}

// Runs up to kBlock tokens at positions length() .. through all layers.
void Session::RunBlock(std::span<const int> tokens, float* logits) {
  const Config& c = config();
  const int rows = int(tokens.size());
  for (int r = 0; r < rows; ++r) {
    std::memcpy(x_.data() + size_t(r) * c.dim, model_.token_embedding(tokens[r]), sizeof(float) * c.dim);
  }
  for (int l = 0; l < c.n_layers; ++l) RunLayer(l, length_, rows);
  Classify(rows, logits);
  length_ += rows;
}

void Session::Classify(int rows, float* logits) {
  const Config& c = config();
  for (int r = 0; r < rows; ++r) {
    float* x = x_.data() + size_t(r) * c.dim;
    RmsNorm(x, x, model_.rms_final(), c.dim, c.norm_eps);
  }
  MatMul(logits, x_.data(), model_.classifier(), c.dim, c.vocab_size, rows);
}

// Layer l for `rows` tokens at positions pos, pos + 1, ...: attention, then the feed-forward block.
void Session::RunLayer(int l, int pos, int rows) {
  int positions[kBlock];
  for (int r = 0; r < rows; ++r) positions[r] = pos + r;
  const std::span<const int> p(positions, size_t(rows));
  // All of the block's keys are cached before any row attends; causality is Attend's business.
  ProjectQkv(l, p, q_.data());
  AttendAndFeedForward(l, p, q_.data());
}

void Session::ProjectQkv(int l, std::span<const int> positions, float* q) {
  const Config& c = config();
  const LayerWeights& w = model_.layer(l);
  const int dim = c.dim, kv_dim = c.kv_dim(), rows = int(positions.size());
  LayerCache& lc = cache_[l];
  for (int r = 0; r < rows; ++r) RmsNorm(&xb_[size_t(r) * dim], &x_[size_t(r) * dim], w.rms_att, dim, c.norm_eps);
  MatMul(q, xb_.data(), w.wq, dim, dim, rows);
  MatMul(k_.data(), xb_.data(), w.wk, dim, kv_dim, rows);
  MatMul(v_.data(), xb_.data(), w.wv, dim, kv_dim, rows);
  for (int r = 0; r < rows; ++r) {
    const size_t at = size_t(positions[r]) * kv_dim, row = size_t(r) * kv_dim;
    std::copy_n(&k_[row], kv_dim, &lc.key_pre[at]);
    std::copy_n(&k_[row], kv_dim, &lc.key[at]);
    std::copy_n(&v_[row], kv_dim, &lc.value[at]);
    ApplyRope(std::span<float>(q + size_t(r) * dim, dim), c.head_size(), positions[r], c.rope_theta);
    ApplyRope(std::span<float>(&lc.key[at], kv_dim), c.head_size(), positions[r], c.rope_theta);
  }
}

void Session::AttendAndFeedForward(int l, std::span<const int> positions, const float* q) {
  const Config& c = config();
  const LayerWeights& w = model_.layer(l);
  const int dim = c.dim, rows = int(positions.size());
  // Causal: row r sees positions up to positions[r] only, although later rows' keys may be cached.
  for (int r = 0; r < rows; ++r) Attend(l, positions[r], q + size_t(r) * dim, &xb_[size_t(r) * dim]);
  MatMul(xb2_.data(), xb_.data(), w.wo, dim, dim, rows);
  for (size_t i = 0; i < size_t(rows) * dim; ++i) x_[i] += xb2_[i];
  FeedForward(l, rows);
}

// Multi-head attention of one token's queries over positions [0, pos] of layer l; grouped-query
// heads share a KV head.
void Session::Attend(int l, int pos, const float* q_all, float* out_all) {
  const Config& c = config();
  const int hs = c.head_size(), kv_dim = c.kv_dim();
  const LayerCache& lc = cache_[l];
  const float scale = 1.0f / std::sqrt(float(hs));
  for (int h = 0; h < c.n_heads; ++h) {
    const float* q = q_all + size_t(h) * hs;
    const size_t kv_off = size_t(h / c.queries_per_kv_head()) * hs;
    DotMany(q, lc.key.data() + kv_off, size_t(kv_dim), hs, pos + 1, att_.data(), 1);
    ScaledSoftmax(att_.data(), pos + 1, scale);
    if (attention_observer_) attention_observer_(l, pos, h, std::span<const float>(att_.data(), size_t(pos) + 1));
    WeightedSum(att_.data(), lc.value.data() + kv_off, size_t(kv_dim), pos + 1, hs, out_all + size_t(h) * hs);
  }
}

// SwiGLU: x += W2 (silu(W1 xn) * (W3 xn)), xn = RMSNorm(x).
void Session::FeedForward(int l, int rows) {
  const Config& c = config();
  const LayerWeights& w = model_.layer(l);
  const int dim = c.dim, hidden = c.hidden_dim;
  for (int r = 0; r < rows; ++r) RmsNorm(&xb_[size_t(r) * dim], &x_[size_t(r) * dim], w.rms_ffn, dim, c.norm_eps);
  MatMul(hb_.data(), xb_.data(), w.w1, dim, hidden, rows);
  MatMul(hb2_.data(), xb_.data(), w.w3, dim, hidden, rows);
  for (size_t i = 0; i < size_t(rows) * hidden; ++i) {
    const float g = hb_[i];
    hb_[i] = g * (1.0f / (1.0f + std::exp(-g))) * hb2_[i];
  }
  MatMul(xb_.data(), hb_.data(), w.w2, hidden, dim, rows);
  for (size_t i = 0; i < size_t(rows) * dim; ++i) x_[i] += xb_[i];
}

Status Session::ExportKv(int begin, int end, KeyForm form, std::span<float> out) const {
  if (begin < 0 || begin > end || end > length_) {
    return InvalidArgument("ExportKv range [" + std::to_string(begin) + ", " + std::to_string(end) +
                           ") not within [0, length " + std::to_string(length_) + ")");
  }
  const size_t n = size_t(end - begin), row = size_t(config().kv_dim());
  if (out.size() != n * KvFloatsPerToken()) {
    return InvalidArgument("ExportKv output holds " + std::to_string(out.size()) + " floats, " +
                           std::to_string(n) + " tokens need " + std::to_string(n * KvFloatsPerToken()));
  }
  float* dst = out.data();
  for (const LayerCache& lc : cache_) {
    const std::vector<float>& k = form == KeyForm::kPostRope ? lc.key : lc.key_pre;
    dst = std::copy_n(k.data() + size_t(begin) * row, n * row, dst);
    dst = std::copy_n(lc.value.data() + size_t(begin) * row, n * row, dst);
  }
  return Status::Ok();
}

Status Session::InjectKv(int begin, std::span<const float> in, int num_tokens, KeyForm form) {
  const Config& c = config();
  if (begin < 0 || num_tokens < 0 || begin > length_ || num_tokens > c.seq_len - begin) {
    return InvalidArgument("InjectKv of " + std::to_string(num_tokens) + " tokens at " + std::to_string(begin) +
                           ": must start within [0, length " + std::to_string(length_) + "] and end within " +
                           std::to_string(c.seq_len) + " positions");
  }
  const size_t n = size_t(num_tokens), row = size_t(c.kv_dim());
  if (in.size() != n * KvFloatsPerToken()) {
    return InvalidArgument("InjectKv input holds " + std::to_string(in.size()) + " floats, " +
                           std::to_string(n) + " tokens need " + std::to_string(n * KvFloatsPerToken()));
  }
  const float* src = in.data();
  for (LayerCache& lc : cache_) {
    // Store the given form, then derive the other one position by position.
    const bool given_pre = form == KeyForm::kPreRope;
    std::vector<float>& given = given_pre ? lc.key_pre : lc.key;
    std::vector<float>& derived = given_pre ? lc.key : lc.key_pre;
    std::copy_n(src, n * row, given.data() + size_t(begin) * row);
    std::copy_n(src, n * row, derived.data() + size_t(begin) * row);
    for (size_t t = 0; t < n; ++t) {
      const int pos = begin + int(t);
      std::span<float> key(derived.data() + size_t(pos) * row, row);
      ApplyRope(key, c.head_size(), given_pre ? pos : -pos, c.rope_theta);
    }
    src += n * row;
    std::copy_n(src, n * row, lc.value.data() + size_t(begin) * row);
    src += n * row;
  }
  length_ = std::max(length_, begin + num_tokens);
  logits_valid_ = false;
  return Status::Ok();
}

}  // namespace kvtier::refmodel
