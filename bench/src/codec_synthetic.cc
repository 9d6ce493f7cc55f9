// Synthetic KV shaped like a production model (default 32 layers x 8 KV heads x 128 dims, fp16):
// every channel drifts smoothly over tokens (AR(1) around a per-channel mean), a few key channels are
// outliers an order of magnitude larger (as observed in real models' keys), and magnitudes grow with
// depth. It is labelled synthetic everywhere: it stands in for head_dim 128 models, whose per-channel
// statistics the 8-dim test model cannot show, not for quality on a real model.
#include <cmath>
#include <random>

#include "codec_variants.h"
#include "kvtier/codec/convert.h"

namespace kvtier::bench::internal {
namespace {

std::vector<float> SyntheticKv(const codec::KvShape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t channels = size_t{shape.num_kv_heads} * shape.head_dim;
  std::vector<float> out(shape.NumValues());
  for (uint32_t layer = 0; layer < shape.num_layers; ++layer) {
    const float depth = 1.0f + 2.0f * static_cast<float>(layer) / static_cast<float>(shape.num_layers);
    for (int kv = 0; kv < 2; ++kv) {
      float* block = out.data() + (size_t{layer} * 2 + kv) * shape.num_tokens * channels;
      for (size_t c = 0; c < channels; ++c) {
        const bool outlier = kv == 0 && (c % 61 == 7 || c % 97 == 3);  // ~3% of key channels
        const float scale = depth * (outlier ? 12.0f : 1.0f) * (kv == 0 ? 1.0f : 0.6f);
        const float mean = 0.5f * scale * normal(rng);
        float drift = 0;
        for (uint32_t t = 0; t < shape.num_tokens; ++t) {
          drift = 0.9f * drift + 0.3f * scale * normal(rng);
          block[size_t{t} * channels + c] = mean + drift;
        }
      }
    }
  }
  return out;
}

// ||x - y|| / ||x|| per layer (K and V together).
std::vector<double> RelativeL2PerLayer(const codec::KvShape& shape, std::span<const float> x, std::span<const float> y) {
  const size_t per_layer = 2 * size_t{shape.num_tokens} * shape.num_kv_heads * shape.head_dim;
  std::vector<double> out(shape.num_layers);
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    double err = 0, norm = 0;
    for (size_t i = l * per_layer; i < (l + 1) * per_layer; ++i) {
      err += double(x[i] - y[i]) * double(x[i] - y[i]);
      norm += double(x[i]) * double(x[i]);
    }
    out[l] = norm > 0 ? std::sqrt(err / norm) : 0;
  }
  return out;
}

std::vector<std::byte> AsFp16(const codec::KvShape& shape, std::span<const float> values) {
  std::vector<std::byte> out(shape.RawBytes());
  codec::FloatToElements(values, DType::kFp16, out);
  return out;
}

}  // namespace

Status EvaluateSynthetic(const CodecEvalOptions& o, codec::Executor* executor, std::ostream& progress,
                         CodecEvalReport& report) {
  const codec::KvShape shape{uint32_t(o.synthetic_layers), uint32_t(o.synthetic_heads), uint32_t(o.synthetic_head_dim),
                             uint32_t(o.synthetic_tokens), DType::kFp16};
  KVTIER_RETURN_IF_ERROR(shape.Validate());
  const std::vector<std::byte> kv = AsFp16(shape, SyntheticKv(shape, 1));
  std::vector<float> reference(shape.NumValues());
  codec::ElementsToFloat(kv, DType::kFp16, reference);  // errors are measured against the fp16 input
  // The shared profile learns from other chunks of the same generator.
  std::vector<std::vector<std::byte>> samples;
  std::vector<codec::KvView> views;
  for (uint32_t seed = 100; seed < 104; ++seed) samples.push_back(AsFp16(shape, SyntheticKv(shape, seed)));
  for (const auto& s : samples) views.push_back({shape, s, {}});
  auto profile = codec::ModelProfile::Build(views);
  if (!profile.ok()) return profile.status();
  progress << "synthetic KV: " << shape.num_layers << " layers x " << shape.num_kv_heads << " heads x " << shape.head_dim
           << " dims x " << shape.num_tokens << " tokens (" << shape.RawBytes() / (1 << 20) << " MiB fp16)\n";

  std::vector<float> decoded(shape.NumValues());
  for (const CodecVariant& v : EvaluatedVariants()) {
    const codec::ModelProfile* shared = v.shared_profile ? &*profile : nullptr;
    CodecEvalRow row = RowFor(v, "synthetic");
    const codec::KvView view{shape, kv, {}};
    auto rt = EncodeDecode(view, v.options, shared);
    if (!rt.ok()) return Status(rt.status().code(), row.profile + " " + row.variant + ": " + rt.status().message());
    row.bits_per_value = 8.0 * static_cast<double>(rt->encoded_bytes) / static_cast<double>(shape.NumValues());
    codec::ElementsToFloat(rt->decoded, DType::kFp16, decoded);
    row.rel_l2_per_layer = RelativeL2PerLayer(shape, reference, decoded);
    double sum = 0;
    for (double e : row.rel_l2_per_layer) {
      sum += e;
      row.rel_l2_max = std::max(row.rel_l2_max, e);
    }
    row.rel_l2_mean = sum / static_cast<double>(row.rel_l2_per_layer.size());
    KVTIER_RETURN_IF_ERROR(FillSpeeds(view, v, shared, executor, o.min_seconds, row));
    progress << "  synthetic " << row.profile << " " << row.variant
             << (row.level ? " L" + std::to_string(row.level) : "") << ": " << row.bits_per_value
             << " bits/value, decode " << row.decode_gbps_1t << " GB/s\n";
    report.rows.push_back(std::move(row));
  }
  return Status::Ok();
}

}  // namespace kvtier::bench::internal
