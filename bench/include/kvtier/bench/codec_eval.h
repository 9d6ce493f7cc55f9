// The codec evaluation behind `kvtier bench-codec` (the codec issue's evaluation, DESIGN §5).
//
// 1. Real KV: held-out TinyStories passages through the stories260K reference model. The prefix's KV
//    (post-RoPE K and V, fp16) goes through each codec profile; the continuation is scored
//    teacher-forced behind the round-tripped KV and behind the exact fp32 KV. Reported: bits per value
//    (everything the container holds, metadata included), size ratios vs fp16 and int8, relative
//    perplexity change, mean and p95 KL divergence of the next-token distributions, and how often the
//    argmax next token agrees.
// 2. Synthetic KV shaped like a production model (labelled synthetic): size ratio and relative L2
//    reconstruction error per layer.
// 3. Speed: encode and decode throughput in GB/s of fp16 data, one thread and all threads.
//
// Not thread-safe; call from one thread (it runs its own executor for the multi-threaded numbers).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier::bench {

struct CodecEvalOptions {
  std::string data_dir;            // stories260K.bin, tok512.bin, tinystories_val.txt (default: the source tree's tests/data)
  int passages = 64;               // evaluation passages from the held-out corpus
  int profile_passages = 16;       // other passages whose KV builds the shared cachegen profile
  int prefix_tokens = 256;         // KV that goes through the codec
  int continuation_tokens = 64;    // scored behind it
  int synthetic_layers = 32;       // the production-shaped synthetic chunk
  int synthetic_heads = 8;
  int synthetic_head_dim = 128;
  int synthetic_tokens = 256;
  double min_seconds = 0.3;        // per speed measurement
  int threads = 0;                 // for the multi-threaded speed numbers; 0 = all cores
  Status Validate() const;
};

struct CodecEvalRow {
  std::string profile;             // codec name
  std::string variant;             // what distinguishes rows of one codec ("anchor", "shared-profile", ...)
  int level = 0;                   // cachegen level, 0 otherwise
  std::string data;                // "real" or "synthetic"
  double bits_per_value = 0;
  double ratio_vs_fp16 = 0;
  double ratio_vs_int8 = 0;
  // Real data only.
  double ppl_delta_rel = 0;
  double kl_mean = 0;
  double kl_p95 = 0;
  double greedy_agreement = 0;
  // Synthetic data only: relative L2 error ||x - x'|| / ||x|| per layer, mean and worst.
  double rel_l2_mean = 0;
  double rel_l2_max = 0;
  std::vector<double> rel_l2_per_layer;
  // Speed on this row's data (GB/s of fp16 values).
  double encode_gbps_1t = 0;
  double decode_gbps_1t = 0;
  double encode_gbps_mt = 0;
  double decode_gbps_mt = 0;
};

struct CodecEvalReport {
  std::vector<CodecEvalRow> rows;
  double exact_perplexity = 0;     // of the continuations behind the exact fp32 KV
  int64_t scored_tokens = 0;
  int threads = 1;
};

// The source tree's tests/data, where the test model lives (compiled in).
std::string DefaultCodecDataDir();

Result<CodecEvalReport> RunCodecEval(const CodecEvalOptions& options, std::ostream& progress);
void PrintCodecTable(const CodecEvalReport& report, std::ostream& out);
// {"profiles":[{"profile":..,"variant":..,"level":N,"data":"real"|"synthetic","bits_per_value":X,
//  "ratio_vs_fp16":X,"ratio_vs_int8":X,["ppl_delta_rel","kl_mean","kl_p95","greedy_agreement" for real]
//  ["rel_l2_mean","rel_l2_max","rel_l2_per_layer":[..] for synthetic],"encode_gbps_1t":X,"decode_gbps_1t":X,
//  "encode_gbps_mt":X,"decode_gbps_mt":X},...],"exact_perplexity":X,"threads":N}
std::string CodecJsonLine(const CodecEvalReport& report);

}  // namespace kvtier::bench
