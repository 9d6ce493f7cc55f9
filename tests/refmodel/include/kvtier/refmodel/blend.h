// Reuse of non-prefix chunks in the reference engine (DESIGN §6): attention statistics measured during an
// ordinary prefill (the metadata Cache-Craft stores with a chunk), and a prefill from cached KV that
// recomputes only some positions (CacheBlend's check-layer selection, or Cache-Craft's precomputed set).
//
// Both run inside a Session with the same kernels and summation order as Session::ForwardMany, so a
// prefill that recomputes everything equals the ordinary one bit for bit. They exist to prove the
// mechanism and measure its quality on the real test model, not to be fast.
//
// Ownership and thread safety: free functions that mutate only the Session they are given (one per
// thread, as for Session itself). The spans in a CheckLayerView point into buffers owned by the running
// BlendPrefill and are valid only during the selector call. The selector runs on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/refmodel/model.h"
#include "kvtier/refmodel/session.h"

namespace kvtier::refmodel {

// A chunk of a prompt: positions [begin, end).
struct ChunkSpan {
  int begin = 0;
  int end = 0;
};

// How one chunk's attention split during a prefill, for reuse metadata (DESIGN §6, Cache-Craft).
// For a query token t of the chunk at layer l, head h, with attention probabilities p over positions 0..t:
//   inter = sum of p over context positions [1, chunk.begin)   (position 0, the BOS attention sink, is
//           excluded from both, because every token attends to it whatever the context is)
//   intra = sum of p over the chunk's own positions [chunk.begin, t]
//   ratio = inter / (inter + intra), 0 when both are 0.
struct ChunkAttention {
  ChunkSpan chunk;
  std::vector<float> layer_context_impact;     // [n_layers]: mean over the chunk's tokens and all query heads of ratio
  float context_impact = 0;                    // mean of layer_context_impact
  std::vector<float> token_context_attention;  // [end - begin]: per token, mean over layers and heads of ratio
  // Per earlier chunk in the `chunks` argument (same order, only those before this one): the share of this
  // chunk's inter mass (summed over tokens, layers, heads) that fell on that chunk's positions. Sums to 1 when
  // inter mass > 0 and the earlier chunks cover [1, begin); all zeros when there is no context.
  std::vector<float> context_attention;
};

// Runs `tokens` like Session::ForwardMany (same KV, same logits bit for bit) and measures ChunkAttention for
// each of `chunks` (ascending, non-overlapping, within the positions the tokens land on). INVALID_ARGUMENT
// for bad chunks; errors of ForwardMany pass through. On error nothing was run.
Result<std::vector<ChunkAttention>> PrefillWithAttentionStats(Session& session, std::span<const int> tokens,
                                                              std::span<const ChunkSpan> chunks);

// What the engine shows a selector at a check layer (CacheBlend): for the active positions (ascending), the
// freshly computed K (post-RoPE at their positions) and V of this layer, and the cached K/V they replace.
struct CheckLayerView {
  int layer = 0;
  int check_index = 0;  // 0 for the first check layer, 1 for the second, ...
  std::span<const int> positions;
  std::span<const float> fresh_key, cached_key, fresh_value, cached_value;  // [positions.size()][kv_dim]
  int kv_dim = 0;
  // Parallel to positions: 1 where the position had no cached KV (its cached rows are zeros). Such positions
  // stay active whether or not the selector returns them.
  std::span<const uint8_t> must_recompute;
};
// Returns the positions (a subset of view.positions, any order) to keep recomputing from this layer on.
using TokenSelector = std::function<std::vector<int>(const CheckLayerView&)>;

struct BlendOptions {
  // CacheBlend: layers before check_layers[0] are computed for every position; at each check layer, K/V of
  // the active positions are computed, `select` picks the ones that stay active, and only those run attention
  // and the MLP of that layer and every later layer. Strictly ascending, each in [0, n_layers). Default: none.
  std::vector<int> check_layers;
  // Required when check_layers is not empty. Default: unset.
  TokenSelector select;
  // Without check layers (Cache-Craft): the positions recomputed at every layer, from layer 0 (any order,
  // each in [0, tokens.size())). Must be empty when check_layers is not. Default: none (only the positions
  // without cached KV are computed).
  std::vector<int> selected;

  // INVALID_ARGUMENT naming the problem, for a prompt of num_tokens tokens.
  Status Validate(const Config& config, int num_tokens) const;
};

struct BlendStats {
  std::vector<int> active_per_layer;  // [n_layers]: positions that ran attention + MLP at each layer
  int recomputed = 0;                 // positions active at the last layer, excluding must-recompute ones
  int reusable = 0;                   // positions that had cached KV
  double flops = 0;                   // what this prefill computed (see PrefillFlops)
  double flops_full = 0;              // what a full prefill of the same tokens would compute
};

// Prefills positions [0, tokens.size()) of an EMPTY session (length() == 0, else FAILED_PRECONDITION) from
// `cached_kv` (kvtier chunk layout [layer][K|V][token][kv_head][head_dim], fp32, keys post-RoPE for the
// positions they are injected at, tokens.size() * KvFloatsPerToken() floats) where has_cached[p] != 0, and
// recomputes the rest as BlendOptions says. Positions with has_cached[p] == 0 are always active at every
// layer (their cached rows are ignored). A position active at layer l gets its fresh K/V written into the
// cache at l; at a check layer the fresh K/V of every position computed there is written (it was paid for).
// Active sets only shrink from layer to layer, so an active position's hidden state is exact up to the
// cached KV it attends to. Attention of an active position runs over the mixed fresh/cached KV of positions
// 0..p (causal). After return length() == tokens.size() and logits() are the last position's logits when it
// was active at the last layer (empty otherwise).
// INVALID_ARGUMENT for bad tokens, sizes or options, checked before anything runs; a selector that returns
// a position outside view.positions is INVALID_ARGUMENT too, and leaves the session reset (length() == 0).
Result<BlendStats> BlendPrefill(Session& session, std::span<const int> tokens, std::span<const float> cached_kv,
                                std::span<const uint8_t> has_cached, const BlendOptions& options);

// FLOPs the engine counts (2 per multiply-add; norms, RoPE, softmax, SiLU not counted; no classifier), per
// token per layer: Q/K/V projections 2*dim*(dim + 2*kv_dim) (a position computed at a layer always gets Q, K
// and V), attention 2*2*n_heads*head_size*(p+1) for position p, output projection 2*dim*dim, MLP
// 2*3*dim*hidden_dim. At a check layer, positions computed but not selected pay only the projections.
// Full prefill of positions [0, num_tokens).
double PrefillFlops(const Config& config, int num_tokens);

}  // namespace kvtier::refmodel
