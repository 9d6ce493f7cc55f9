// The codec configurations the evaluation compares, and the measurements every data set shares
// (size, round trip, speed). Internal to the codec evaluation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kvtier/bench/codec_eval.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/executor.h"
#include "kvtier/codec/model_profile.h"

namespace kvtier::bench::internal {

struct CodecVariant {
  std::string variant;         // label next to the codec name
  codec::EncodeOptions options;
  bool shared_profile = false;  // cachegen tables from a ModelProfile built on other samples
};

// raw, lossless, int8, cachegen (levels 1-3, anchor-delta off and on, shared profile), kivi2, mixed.
std::vector<CodecVariant> EvaluatedVariants();

// One chunk through a variant: encoded size and the decoded bytes.
struct RoundTrip {
  uint64_t encoded_bytes = 0;
  std::vector<std::byte> decoded;
};
Result<RoundTrip> EncodeDecode(const codec::KvView& kv, const codec::EncodeOptions& options,
                               const codec::ModelProfile* profile);

// Encode and decode throughput of one chunk (GB/s of raw bytes), repeated for at least min_seconds.
struct Speed {
  double encode_gbps = 0;
  double decode_gbps = 0;
};
Result<Speed> MeasureSpeed(const codec::KvView& kv, codec::EncodeOptions options, const codec::ModelProfile* profile,
                           codec::Executor* executor, double min_seconds);

// Fills the row's four speed columns: one thread, then `executor`'s threads.
Status FillSpeeds(const codec::KvView& kv, const CodecVariant& v, const codec::ModelProfile* profile,
                  codec::Executor* executor, double min_seconds, CodecEvalRow& row);

// Builds the row's identity fields (profile, variant, level) for `v`.
CodecEvalRow RowFor(const CodecVariant& v, const std::string& data);

// The two data sets (codec_real.cc, codec_synthetic.cc) append rows.
Status EvaluateReal(const CodecEvalOptions& options, codec::Executor* executor, std::ostream& progress,
                    CodecEvalReport& report);
Status EvaluateSynthetic(const CodecEvalOptions& options, codec::Executor* executor, std::ostream& progress,
                         CodecEvalReport& report);

}  // namespace kvtier::bench::internal
