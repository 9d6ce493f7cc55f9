// Hostile input over every codec: every truncation, every bit flip of the header and stream table, a
// sample of body flips, and body damage behind valid checksums (what the fuzzers do). Decode must fail
// with INVALID_ARGUMENT or DATA_LOSS (or, behind valid checksums, possibly succeed), never crash and
// never write outside the output buffer.
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <random>
#include <string>

#include "codec_test_util.h"
#include "container.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"

namespace kvtier::codec {
namespace {

using testing::GuardedBuffer;

struct Variant {
  std::string name;
  EncodeOptions options;
};

class Corruption : public ::testing::Test {
 protected:
  static constexpr KvShape kShape{2, 2, 8, 5, DType::kFp16};

  void SetUp() override {
    kv_ = testing::MakeKv(kShape, 11);
    const KvShape sample_shape{2, 2, 8, 64, DType::kFp16};
    sample_ = testing::MakeKv(sample_shape, 12);
    const KvView samples[] = {sample_.View()};
    auto profile = ModelProfile::Build(samples);
    ASSERT_TRUE(profile.ok()) << profile.status().ToString();
    profile_.emplace(std::move(profile).value());
    decode_.profiles = [this](uint64_t id) -> const ModelProfile* {
      return id == profile_->id() ? &*profile_ : nullptr;
    };
  }

  std::vector<Variant> Variants() const {
    std::vector<Variant> v;
    for (CodecId c : kAllCodecs) {
      EncodeOptions o;
      o.codec = c;
      o.max_tokens_per_stream = 2;
      v.push_back({std::string(CodecName(c)), o});
      if (c == CodecId::kCacheGen) {
        o.profile = &*profile_;
        o.anchor_delta = true;
        v.push_back({"cachegen+profile", o});
      }
    }
    return v;
  }

  std::vector<std::byte> EncodeVariant(const Variant& v) {
    std::vector<std::byte> out;
    Status s = Encode(kv_.View(), v.options, out);
    EXPECT_TRUE(s.ok()) << v.name << ": " << s.ToString();
    return out;
  }

  // Decodes into a guarded buffer; returns the status after checking the guards.
  Status GuardedDecode(std::span<const std::byte> bytes, const std::string& what) {
    GuardedBuffer out(kShape.RawBytes());
    Status s = Decode(bytes, out.span(), decode_);
    EXPECT_TRUE(out.Intact()) << what << ": decode wrote outside its buffer";
    return s;
  }

  void ExpectRejected(std::span<const std::byte> bytes, const std::string& what, bool inspect_fails) {
    const Status s = GuardedDecode(bytes, what);
    EXPECT_TRUE(s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kDataLoss)
        << what << ": " << s.ToString();
    if (inspect_fails) {
      auto info = Inspect(bytes);
      EXPECT_TRUE(!info.ok() && (info.status().code() == StatusCode::kInvalidArgument ||
                                 info.status().code() == StatusCode::kDataLoss))
          << what << ": Inspect " << info.status().ToString();
    }
  }

  testing::TestKv kv_, sample_;
  std::optional<ModelProfile> profile_;
  DecodeOptions decode_;
};

// Recomputes every checksum so damage reaches the codec's own parsing.
void FixChecksums(std::vector<std::byte>& c) { internal::RecomputeChecksums(c); }

TEST_F(Corruption, ValidContainersDecode) {
  for (const Variant& v : Variants()) {
    const auto enc = EncodeVariant(v);
    EXPECT_TRUE(GuardedDecode(enc, v.name).ok()) << v.name;
    auto info = Inspect(enc);
    ASSERT_TRUE(info.ok()) << v.name;
    EXPECT_EQ(info->shape, kShape);
  }
}

TEST_F(Corruption, EveryTruncationIsRejected) {
  for (const Variant& v : Variants()) {
    const auto enc = EncodeVariant(v);
    for (size_t n = 0; n < enc.size(); ++n) {
      ExpectRejected(std::span(enc).first(n), v.name + " truncated to " + std::to_string(n), true);
    }
  }
}

TEST_F(Corruption, EveryBitFlipOfHeaderAndTableIsRejected) {
  for (const Variant& v : Variants()) {
    const auto enc = EncodeVariant(v);
    auto info = Inspect(enc);
    ASSERT_TRUE(info.ok());
    const size_t prefix = 64 + 16 * size_t{info->num_streams};
    auto bad = enc;
    for (size_t bit = 0; bit < prefix * 8; ++bit) {
      bad[bit / 8] ^= std::byte(1u << (bit % 8));
      ExpectRejected(bad, v.name + " bit " + std::to_string(bit), true);
      bad[bit / 8] ^= std::byte(1u << (bit % 8));
    }
  }
}

TEST_F(Corruption, BodyBitFlipsAreDataLoss) {
  std::mt19937 rng(3);
  for (const Variant& v : Variants()) {
    const auto enc = EncodeVariant(v);
    const size_t prefix = 64 + 16 * size_t{Inspect(enc)->num_streams};
    if (enc.size() == prefix) continue;
    auto bad = enc;
    for (int i = 0; i < 300; ++i) {
      const size_t bit = prefix * 8 + rng() % ((enc.size() - prefix) * 8);
      bad[bit / 8] ^= std::byte(1u << (bit % 8));
      const Status s = GuardedDecode(bad, v.name);
      EXPECT_EQ(s.code(), StatusCode::kDataLoss) << v.name << " body bit " << bit << ": " << s.ToString();
      bad[bit / 8] ^= std::byte(1u << (bit % 8));
    }
  }
}

TEST_F(Corruption, DamageBehindValidChecksumsNeverCrashes) {
  std::mt19937 rng(4);
  for (const Variant& v : Variants()) {
    const auto enc = EncodeVariant(v);
    const size_t prefix = 64 + 16 * size_t{Inspect(enc)->num_streams};
    for (int i = 0; i < 3000; ++i) {
      auto bad = enc;
      const int flips = 1 + rng() % 4;
      for (int f = 0; f < flips; ++f) {
        const size_t at = rng() % bad.size();
        bad[at] ^= std::byte(1u << (rng() % 8));
      }
      FixChecksums(bad);
      const Status s = GuardedDecode(bad, v.name);
      EXPECT_TRUE(s.ok() || s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kDataLoss ||
                  s.code() == StatusCode::kNotFound)
          << v.name << ": " << s.ToString();
    }
    // Moving bytes between streams (lengths still add up) must be caught by the codec's own checks.
    if (Inspect(enc)->num_streams >= 2) {
      auto bad = enc;
      internal::StreamEntry a, b;
      std::memcpy(&a, bad.data() + 64, 16);
      std::memcpy(&b, bad.data() + 80, 16);
      if (a.length > 0) {
        a.length -= 1;
        b.length += 1;
        std::memcpy(bad.data() + 64, &a, 16);
        std::memcpy(bad.data() + 80, &b, 16);
        FixChecksums(bad);
        const Status s = GuardedDecode(bad, v.name);
        if (v.options.codec != CodecId::kRaw) {
          EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << v.name << ": " << s.ToString();
        }
      }
    }
    (void)prefix;
  }
}

TEST_F(Corruption, UnknownProfileIsNotFound) {
  Variant v = Variants().back();
  for (const Variant& x : Variants()) {
    if (x.name == "cachegen+profile") v = x;
  }
  const auto enc = EncodeVariant(v);
  std::vector<std::byte> out(kShape.RawBytes());
  EXPECT_EQ(Decode(enc, out, DecodeOptions{}).code(), StatusCode::kNotFound);
  DecodeOptions unknown;
  unknown.profiles = [](uint64_t) -> const ModelProfile* { return nullptr; };
  EXPECT_EQ(Decode(enc, out, unknown).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvtier::codec
