// Model: a Llama-architecture checkpoint in llama2.c's legacy format (the stories260K test model),
// loaded into memory as fp32.
//
// File format (tests/data/MODELS.md): 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len), then fp32 weights. A positive vocab_size means the classifier shares
// the token-embedding matrix; a negative one means a separate classifier follows. Two legacy RoPE
// tables at the end are ignored (RoPE is computed, see rope.h). Load checks the header and that the
// file size is exactly what the header implies, so a truncated or foreign file is an error, not garbage.
//
// Ownership and thread safety: a Model is an immutable handle; copies share one weight buffer, so
// copying is cheap and any number of threads may read one Model. Sessions (session.h) hold their own
// copy of the handle, so the Model a session was built from may be destroyed first.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"

namespace kvtier::refmodel {

struct Config {
  int dim = 0;         // width of the residual stream
  int hidden_dim = 0;  // width of the SwiGLU feed-forward layer
  int n_layers = 0;
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads (grouped-query attention when fewer than n_heads)
  int vocab_size = 0;
  int seq_len = 0;     // longest context the model was trained for; sessions hold this many positions
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;

  int head_size() const { return dim / n_heads; }
  int kv_dim() const { return n_kv_heads * head_size(); }
  int queries_per_kv_head() const { return n_heads / n_kv_heads; }
};

// One transformer block's weights. Matrices are row-major [out][in], so every output element is a dot
// product over contiguous memory.
struct LayerWeights {
  const float* rms_att;  // [dim]
  const float* wq;       // [dim][dim]
  const float* wk;       // [kv_dim][dim]
  const float* wv;       // [kv_dim][dim]
  const float* wo;       // [dim][dim]
  const float* rms_ffn;  // [dim]
  const float* w1;       // [hidden_dim][dim] gate
  const float* w2;       // [dim][hidden_dim] down
  const float* w3;       // [hidden_dim][dim] up
};

class Model {
 public:
  static constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);

  // Reads and validates a checkpoint file. INVALID_ARGUMENT names the problem (short file, bad
  // dimensions, size mismatch); NOT_FOUND when the file cannot be opened.
  static Result<Model> Load(const std::string& path);
  // Same checks on bytes already in memory; `name` only labels error messages.
  static Result<Model> FromBytes(std::span<const std::byte> bytes, const std::string& name = "checkpoint");

  const Config& config() const { return config_; }
  const LayerWeights& layer(int l) const { return layers_[l]; }
  const float* token_embedding(int token) const { return token_embedding_ + size_t(token) * config_.dim; }
  const float* rms_final() const { return rms_final_; }
  const float* classifier() const { return classifier_; }  // [vocab_size][dim]

 private:
  Model() = default;

  Config config_;
  std::shared_ptr<const std::vector<float>> weights_;  // the pointers below point into it
  std::vector<LayerWeights> layers_;
  const float* token_embedding_ = nullptr;
  const float* rms_final_ = nullptr;
  const float* classifier_ = nullptr;
};

// The kvtier fingerprint of this model's KV as the Session exports it: fp32, keys post-RoPE, interleaved
// (GPT-J) pairs over the whole head, chunks of `chunk_tokens`.
ModelFingerprint KvFingerprint(const Config& config, uint32_t chunk_tokens);

}  // namespace kvtier::refmodel
