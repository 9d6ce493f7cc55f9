// Session: one sequence being run through a Model, with its KV cache.
//
// Forward(token) appends one token at position length() and returns the next-token logits. The cache
// holds, per layer and position, K after RoPE (what attention reads), K before RoPE and V, all fp32, for
// up to config().seq_len positions, allocated once at construction.
//
// KV crosses the session boundary in kvtier's chunk layout (DESIGN §2), fp32:
//   [layer][K|V][token][kv_head][head_dim]
// i.e. for each layer all K rows of the tokens, then all V rows; KvFloatsPerToken() floats per token.
// ExportKv copies a range of positions out; InjectKv writes KV into positions as if those tokens had
// been prefilled there, which is how tests replay KV that went through a codec or the store.
//
// Ownership and thread safety: a Session owns its cache and scratch buffers and keeps its own Model
// handle; copying a Session forks the sequence (the cache is copied). It is not synchronized: use one
// Session per thread (several may share a Model). The spans Forward, ForwardMany and logits() return
// stay valid until the next non-const call.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/refmodel/model.h"

namespace kvtier::refmodel {

enum class KeyForm {
  kPostRope,  // K as attention uses it, rotated for its position
  kPreRope,   // K straight out of the projection, position-free
};

class Session {
 public:
  explicit Session(Model model);

  // Runs `token` at position length() and returns the logits for the token after it.
  // INVALID_ARGUMENT for a token outside the vocabulary, OUT_OF_RANGE when the context is full.
  Result<std::span<const float>> Forward(int token);
  // Runs `tokens` at positions length() .. and returns the logits after each of them, [n][vocab_size].
  // Equal bit for bit to calling Forward per token, but faster: a block of tokens shares each pass
  // over the weights. On error nothing was run.
  Result<std::span<const float>> ForwardMany(std::span<const int> tokens);
  // Logits after the last token run; empty after construction, Reset, Truncate or InjectKv.
  std::span<const float> logits() const;

  int length() const { return length_; }
  int capacity() const { return model_.config().seq_len; }
  void Reset();
  // Forgets positions [n, length()); INVALID_ARGUMENT when n > length().
  Status Truncate(int n);

  const Model& model() const { return model_; }
  const Config& config() const { return model_.config(); }
  size_t KvFloatsPerToken() const { return size_t(config().n_layers) * 2 * config().kv_dim(); }

  // Writes positions [begin, end) into `out`, which must hold exactly (end - begin) *
  // KvFloatsPerToken() floats. INVALID_ARGUMENT when the range is not within [0, length()].
  Status ExportKv(int begin, int end, KeyForm form, std::span<float> out) const;

  // Writes `num_tokens` positions of KV starting at `begin` (which must be <= length(), so no
  // position stays unset) and makes length() at least begin + num_tokens. `in` holds exactly
  // num_tokens * KvFloatsPerToken() floats. kPreRope keys are rotated for their target positions;
  // kPostRope keys are taken as rotated for exactly those positions and un-rotated for the pre-RoPE
  // copy (equal to the original up to rounding). Positions after the range keep their KV even if it
  // was computed behind the old one (selective recomputation is the caller's business).
  // INVALID_ARGUMENT for a bad range or size.
  Status InjectKv(int begin, std::span<const float> in, int num_tokens, KeyForm form);

 private:
  // Layer-level access for the prefills in blend.h (src/blend.cc, src/attention_stats.cc), which run the
  // same kernels in a different order or watch the attention; kept out of the public API.
  friend class BlendRunner;
  friend class AttentionProbe;

  // Per layer: [seq_len][kv_dim] each.
  struct LayerCache {
    std::vector<float> key;      // after RoPE
    std::vector<float> key_pre;  // before RoPE
    std::vector<float> value;
  };

  // Called with the attention probabilities over positions [0, pos] of one query head, when set.
  using AttentionObserver = std::function<void(int layer, int pos, int head, std::span<const float> probs)>;

  // Tokens run together through each layer; bounds the scratch buffers.
  static constexpr int kBlock = 16;

  void RunBlock(std::span<const int> tokens, float* logits);
  void RunLayer(int l, int pos, int rows);
  // The two halves of a layer for up to kBlock rows of x_, row r at positions[r]. ProjectQkv writes the
  // rows' queries (rotated) to q [rows][dim] and their K/V into the cache; AttendAndFeedForward runs
  // attention for those queries over the cache and the rest of the layer, updating x_.
  void ProjectQkv(int l, std::span<const int> positions, float* q);
  void AttendAndFeedForward(int l, std::span<const int> positions, const float* q);
  void Attend(int l, int pos, const float* q, float* out);
  void FeedForward(int l, int rows);
  // Final norm and classifier for `rows` rows of x_.
  void Classify(int rows, float* logits);

  Model model_;
  std::vector<LayerCache> cache_;
  int length_ = 0;
  size_t last_logits_ = 0;      // offset of the last token's logits in logits_
  bool logits_valid_ = false;
  AttentionObserver attention_observer_;  // set only for the duration of one prefill

  // Scratch for kBlock tokens ([row][width]), sized once; logits_ grows to the longest ForwardMany.
  std::vector<float> x_, xb_, xb2_, q_, k_, v_, hb_, hb2_, att_, logits_;
};

}  // namespace kvtier::refmodel
