// Shared by the fuzzers and the seed generator: the one shared profile the resolver knows, checksum
// repair, and a decode into an exactly sized heap buffer (ASan flags any write past it).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "container.h"
#include "float_convert.h"
#include "kvtier/api/types.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"

namespace kvtier::codec::fuzz {

inline constexpr uint64_t kMaxDecodeBytes = 4 << 20;

// Deterministic smooth values, the same in every process.
inline std::vector<std::byte> SampleKv(const KvShape& s, uint32_t seed) {
  std::vector<float> v(s.NumValues());
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < v.size(); ++i) {
    x = x * 1664525u + 1013904223u;
    v[i] = 0.8f * static_cast<float>((i * 7) % 23) / 23.0f - 0.4f + static_cast<float>(x >> 8) / 16777216.0f * 0.3f;
  }
  std::vector<std::byte> bytes(s.RawBytes());
  internal::FromFloat(v.data(), v.size(), s.dtype, bytes.data());
  return bytes;
}

inline const KvShape kProfileShape{2, 2, 8, 64, DType::kFp16};

// The profile every fuzzer's resolver knows (cachegen chunks of 2 layers x 2 heads x 8 dims).
inline const ModelProfile* TestProfile() {
  static const ModelProfile* profile = [] {
    const std::vector<std::byte> bytes = SampleKv(kProfileShape, 99);
    const KvView samples[] = {KvView{kProfileShape, bytes, {}}};
    auto built = ModelProfile::Build(samples);
    if (!built.ok()) std::abort();
    return new ModelProfile(std::move(built).value());
  }();
  return profile;
}

inline DecodeOptions FuzzDecodeOptions() {
  DecodeOptions o;
  o.profiles = [](uint64_t id) -> const ModelProfile* {
    const ModelProfile* p = TestProfile();
    return id == p->id() ? p : nullptr;
  };
  return o;
}

// Recomputes the stream, table and header checksums of whatever lies in `c` (as far as it parses).
inline void FixChecksums(std::vector<std::byte>& c) { internal::RecomputeChecksums(c); }

// Decodes into an exactly sized heap buffer when the container is small enough, otherwise into a
// tiny one (which must be refused). Aborts on a status code Decode must never return.
inline void DecodeOnce(std::span<const std::byte> bytes) {
  static const DecodeOptions options = FuzzDecodeOptions();
  auto info = Inspect(bytes);
  const uint64_t raw = info.ok() ? info->shape.RawBytes() : 16;
  std::unique_ptr<std::byte[]> out(new std::byte[raw <= kMaxDecodeBytes ? raw : 16]);
  const Status s = Decode(bytes, {out.get(), raw <= kMaxDecodeBytes ? raw : 16}, options);
  if (!s.ok() && s.code() != StatusCode::kInvalidArgument && s.code() != StatusCode::kDataLoss &&
      s.code() != StatusCode::kNotFound) {
    std::abort();
  }
  if (s.ok() && (!info.ok() || raw > kMaxDecodeBytes)) std::abort();
}

}  // namespace kvtier::codec::fuzz
