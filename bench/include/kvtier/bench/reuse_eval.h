// The reuse evaluation behind `kvtier bench-reuse` (DESIGN §6): chunk reuse beyond prefixes, with
// CacheBlend and Cache-Craft selective recomputation, on the real stories260K model, through a kvtier
// server (in this process on a loopback port, or a running one at --endpoint).
//
// 1. Passages: held-out TinyStories pieces, `passage_tokens` each, plus the `continuation_tokens` that
//    follow in their piece. Each is prefilled alone behind BOS and stored in kvtier as a content-mode
//    variant with reuse metadata (and as a prefix-mode chunk behind the BOS chunk).
// 2. Earlier requests: `seed_prompts` RAG prompts (BOS + 4-6 passages in random order) are prefilled in
//    full; every passage's KV is stored as a variant computed behind the passages before it, with the
//    attention statistics Cache-Craft needs, and each prompt's prefix chain is stored for prefix caching.
// 3. Evaluation prompts: BOS + 4-6 passages in a new random order, then the last passage's continuation,
//    scored teacher-forced. Methods, on the same prompts: full prefill (reference); prefix caching (leading
//    chunks that hit in kvtier); naive reuse (every passage's alone variant re-rotated to its new position,
//    nothing recomputed); CacheBlend at each ratio (alone variants, V deviation at check layer 1);
//    Cache-Craft at each alpha (the server's best variant for the new context and its metadata).
//    Per method: mean and p95 KL divergence of the next-token distributions against full prefill,
//    continuation perplexity, greedy agreement, the share of reusable tokens recomputed, and prefill FLOPs
//    relative to full prefill.
//
// Not thread-safe; call from one thread.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier::bench {

struct ReuseEvalOptions {
  std::string data_dir;            // stories260K.bin, tok512.bin, tinystories_val.txt
  std::string endpoint;            // a running kvtier server; empty = start one in this process
  int passages = 24;               // the passage pool prompts draw from
  int passage_tokens = 48;         // tokens per passage (one chunk)
  int continuation_tokens = 32;    // scored after the last passage
  int seed_prompts = 24;           // earlier requests whose variants Cache-Craft can reuse
  int prompts = 256;               // evaluation prompts
  int min_passages = 4;            // per prompt
  int max_passages = 6;
  uint64_t seed = 7;
  std::vector<double> cacheblend_ratios = {0.05, 0.10, 0.15, 0.20, 0.30};
  std::string cacheblend_metric = "value";     // deviation of "key" or "value" rows
  // Gradual filtering (the default): with k check layers, check i keeps ratio x taper^(k-1-i) (capped at 1),
  // so the last check keeps `ratio`; taper 1 = the same share at every check.
  std::vector<int> cacheblend_check_layers = {1, 2};
  double cacheblend_taper = 2.0;
  std::vector<double> cachecraft_alphas = {0.25, 0.5, 0.6, 0.7, 0.8, 1, 1.5, 2};
  // CI assumed for variants computed alone (CacheCraftOptions::default_context_impact).
  double cachecraft_default_ci = 0.5;
  std::string plot_path;           // PNG of quality versus compute (needs gnuplot); empty = no plot
  Status Validate() const;
};

struct ReuseMethodRow {
  std::string method;              // full, prefix, naive, cacheblend, cachecraft
  double param = 0;                // CacheBlend ratio or Cache-Craft alpha; 0 otherwise
  double recompute_frac = 0;       // reusable tokens recomputed / reusable tokens
  double kl_mean = 0;              // KL(full || method) of next-token distributions, nats
  double kl_p95 = 0;
  double ppl = 0;                  // continuation perplexity
  double greedy_agreement = 0;     // argmax equal to full prefill's
  double flops_rel = 0;            // prefill FLOPs / full prefill FLOPs
  double gap_closed = 0;           // 1 - kl_mean / naive kl_mean
};

struct ReuseEvalReport {
  std::vector<ReuseMethodRow> rows;
  int prompts = 0;
  int64_t scored_tokens = 0;
  double mean_prompt_tokens = 0;
  double default_ci = 0;           // the CI Cache-Craft used for alone variants
  double mean_variant_match = 0;   // context match of the variants the server chose
  double alone_variant_share = 0;  // share of chosen variants computed alone
  int stored_variants = 0;         // variant puts the server admitted
};

// The source tree's tests/data (compiled in).
std::string DefaultReuseDataDir();

Result<ReuseEvalReport> RunReuseEval(const ReuseEvalOptions& options, std::ostream& progress);
void PrintReuseTable(const ReuseEvalReport& report, std::ostream& out);
// {"methods":[{"method":..,"param":X,"recompute_frac":X,"kl_mean":X,"kl_p95":X,"ppl":X,
//  "greedy_agreement":X,"flops_rel":X},...]}
std::string ReuseJsonLine(const ReuseEvalReport& report);
// Writes the quality-versus-compute plot with gnuplot. UNAVAILABLE when gnuplot is missing or fails.
Status PlotReuse(const ReuseEvalReport& report, const std::string& png_path);

}  // namespace kvtier::bench
