// Cachegen codec: the rANS coder, table serialization, round trips within the error bound for every
// level / anchor / table placement / dtype, shared profiles, hostile input and size sanity.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cachegen_tables.h"
#include "codec_impl.h"
#include "container.h"
#include "float_convert.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/executor.h"
#include "kvtier/codec/model_profile.h"
#include "range_coder.h"

namespace kvtier::codec {
namespace {

using internal::FreqTable;
using internal::kProbBits;
using internal::kProbScale;

// ---- helpers ----

// Smooth synthetic KV: per channel a mean, a slow sinusoid over tokens and a little noise; a few
// outlier channels per row (as real keys have). Values as floats in canonical layout.
// The per-channel statistics come from a fixed "model" seed (as a real model's do), phases and
// noise from `seed`.
std::vector<float> SmoothKv(const KvShape& s, uint32_t seed) {
  std::mt19937 model(1234), rng(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  const uint32_t width = s.num_kv_heads * s.head_dim;
  std::vector<float> v(s.NumValues());
  for (uint32_t lk = 0; lk < 2 * s.num_layers; ++lk) {
    for (uint32_t c = 0; c < width; ++c) {
      const bool outlier = u01(model) < 0.02f;
      const float mean = (lk % 2 == 0 ? 0.6f : 0.1f) * n01(model) * (outlier ? 8.0f : 1.0f);
      const float amp = 0.5f * u01(model) * (outlier ? 4.0f : 1.0f);
      const float omega = 0.02f + 0.1f * u01(model);
      const float phase = 6.28f * u01(rng);
      for (uint32_t t = 0; t < s.num_tokens; ++t) {
        v[(size_t{lk} * s.num_tokens + t) * width + c] = mean + amp * std::sin(omega * t + phase) + 0.05f * n01(rng);
      }
    }
  }
  return v;
}

std::vector<std::byte> ToBytes(const std::vector<float>& v, DType dtype) {
  std::vector<std::byte> out(v.size() * DTypeBytes(dtype));
  internal::FromFloat(v.data(), v.size(), dtype, out.data());
  return out;
}

std::vector<float> FromBytes(std::span<const std::byte> b, DType dtype) {
  std::vector<float> out(b.size() / DTypeBytes(dtype));
  internal::ToFloat(b.data(), dtype, out.size(), out.data());
  return out;
}

float DTypeEps(DType d) { return d == DType::kFp16 ? 1.0f / 1024 : d == DType::kBf16 ? 1.0f / 128 : 1e-6f; }

// Checks every decoded value against the bound of CACHEGEN.md: plain rows |x - x'| <= s / (2B);
// delta rows <= (s_t + s_anchor) / (2B) (and s_t / (2B) where the deltas stay inside the row's
// absmax); plus the output dtype's rounding. Scales are stored rounded up to bf16, so `s` may be up to
// 2^-7 above the absmax the test computes.
void ExpectWithinBound(const KvShape& s, const std::vector<float>& x, const std::vector<float>& y, int level,
                       bool anchor, uint32_t tps) {
  const uint32_t width = s.num_kv_heads * s.head_dim;
  for (uint32_t lk = 0; lk < 2 * s.num_layers; ++lk) {
    const float b = static_cast<float>(internal::DefaultBins(level, lk / 2, s.num_layers, lk % 2));
    float anchor_absmax = 0;
    for (uint32_t t = 0; t < s.num_tokens; ++t) {
      const size_t row = (size_t{lk} * s.num_tokens + t) * width;
      float absmax = 0;
      for (uint32_t c = 0; c < width; ++c) absmax = std::max(absmax, std::fabs(x[row + c]));
      const bool delta = internal::IsDeltaRow(anchor, t % tps);
      const float scale = (delta ? absmax + anchor_absmax : absmax) * (1.0f + 1.0f / 128);
      if (!delta) anchor_absmax = absmax;
      for (uint32_t c = 0; c < width; ++c) {
        const float bound = scale / (2 * b) * 1.0001f + std::fabs(y[row + c]) * DTypeEps(s.dtype) + 1e-30f;
        ASSERT_LE(std::fabs(x[row + c] - y[row + c]), bound)
            << "layer-kv " << lk << " token " << t << " channel " << c << " level " << level << " anchor " << anchor;
      }
    }
  }
}

struct Encoded {
  std::vector<std::byte> bytes;
  std::vector<float> input;  // the values actually encoded (after rounding to the dtype)
};

Encoded EncodeSmooth(const KvShape& s, const EncodeOptions& o, uint32_t seed = 1) {
  Encoded e;
  const std::vector<std::byte> raw = ToBytes(SmoothKv(s, seed), s.dtype);
  e.input = FromBytes(raw, s.dtype);
  const Status st = Encode(KvView{s, raw, {}}, o, e.bytes);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return e;
}

EncodeOptions CacheGenOptions(int level, bool anchor, const ModelProfile* profile = nullptr) {
  EncodeOptions o;
  o.codec = CodecId::kCacheGen;
  o.level = level;
  o.anchor_delta = anchor;
  o.profile = profile;
  return o;
}

ModelProfile BuildProfile(const KvShape& shape, uint32_t seed = 7) {
  KvShape sample = shape;
  sample.num_tokens = 64;
  const std::vector<std::byte> raw = ToBytes(SmoothKv(sample, seed), sample.dtype);
  const KvView views[] = {KvView{sample, raw, {}}};
  Result<ModelProfile> p = ModelProfile::Build(views);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(p).value();
}

// ---- the coder ----

TEST(CacheGenRangeCoder, NormalizeSumsExactlyWithNonzeroFrequencies) {
  std::mt19937 rng(3);
  for (int iter = 0; iter < 2000; ++iter) {
    const uint32_t n = 1 + rng() % internal::kMaxTableSymbols;
    uint32_t w[internal::kMaxTableSymbols];
    for (uint32_t i = 0; i < n; ++i) w[i] = (rng() % 3 == 0) ? 0 : rng() % (1u << 24);
    if (iter % 7 == 0) std::fill(w, w + n, 0);
    FreqTable t;
    internal::NormalizeFreqs(w, n, t);
    ASSERT_EQ(t.cum[0], 0);
    ASSERT_EQ(t.cum[n], kProbScale);
    for (uint32_t i = 0; i < n; ++i) ASSERT_GT(t.cum[i + 1], t.cum[i]);
    for (uint32_t i = n + 1; i < 32; ++i) ASSERT_EQ(t.cum[i], internal::kCumSentinel);
    for (uint32_t slot = 0; slot < kProbScale; slot += 37) {
      const uint32_t s = internal::FindSymbol(t, slot);
      ASSERT_LT(s, n);
      ASSERT_LE(t.cum[s], slot);
      ASSERT_GT(t.cum[s + 1], slot);
    }
  }
}

TEST(CacheGenRangeCoder, RoundTripsSkewedTablesAndRawBits) {
  std::mt19937 rng(5);
  for (int iter = 0; iter < 200; ++iter) {
    const uint32_t n = 1 + rng() % internal::kMaxTableSymbols;
    uint32_t w[internal::kMaxTableSymbols];
    for (uint32_t i = 0; i < n; ++i) w[i] = 1u << (rng() % 20);  // very skewed
    FreqTable t;
    internal::NormalizeFreqs(w, n, t);
    const size_t count = rng() % 3000;
    // Symbols drawn from the table itself, alphabet edges forced in; every 13th a raw-bits value.
    std::vector<uint32_t> sym(count), bits(count, 0);
    for (size_t i = 0; i < count; ++i) {
      if (i % 13 == 5) {
        bits[i] = 1 + rng() % kProbBits;
        sym[i] = rng() & ((1u << bits[i]) - 1);
      } else {
        sym[i] = i % 17 == 0 ? 0 : i % 17 == 1 ? n - 1 : internal::FindSymbol(t, rng() % kProbScale);
      }
    }
    internal::RansEncoder enc(count);
    for (size_t i = count; i-- > 0;) {
      if (bits[i] != 0) {
        enc.PutBits(i % 4, sym[i], bits[i]);
      } else {
        enc.Put(i % 4, t.cum[sym[i]], t.cum[sym[i] + 1] - t.cum[sym[i]]);
      }
    }
    std::vector<std::byte> bytes;
    enc.Finish(bytes);
    internal::RansDecoder dec;
    ASSERT_TRUE(dec.Init(bytes));
    for (size_t i = 0; i < count; ++i) {
      uint32_t& x = dec.state[i % 4];
      if (bits[i] != 0) {
        ASSERT_EQ(internal::RansDecoder::GetBits<true>(x, bits[i], dec.pos, dec.end, dec.error), sym[i]);
      } else {
        const uint32_t slot = x & (kProbScale - 1);
        const uint32_t s = internal::FindSymbol(t, slot);
        ASSERT_EQ(s, sym[i]) << "at " << i;
        internal::RansDecoder::Advance<true>(x, slot, t.cum[s], t.cum[s + 1] - t.cum[s], dec.pos, dec.end, dec.error);
      }
    }
    ASSERT_TRUE(dec.Finish());
    // A stream cut short is noticed (an error or states that do not return), never read past.
    if (bytes.size() > internal::kRansHeaderBytes + 2) {
      const std::span<const std::byte> cut(bytes.data(), bytes.size() - 2);
      internal::RansDecoder d2;
      ASSERT_TRUE(d2.Init(cut));
      for (size_t i = 0; i < count; ++i) {
        uint32_t& x = d2.state[i % 4];
        const uint32_t slot = x & (kProbScale - 1);
        const uint32_t s = internal::FindSymbol(t, slot);
        internal::RansDecoder::Advance<true>(x, slot, t.cum[s], t.cum[s + 1] - t.cum[s], d2.pos, d2.end, d2.error);
      }
      EXPECT_FALSE(d2.Finish());
    }
  }
}

TEST(CacheGenRangeCoder, InitRejectsMalformedHeads) {
  internal::RansDecoder dec;
  std::vector<std::byte> b(internal::kRansHeaderBytes, std::byte{0});
  EXPECT_FALSE(dec.Init(b));  // states below kRansLow
  EXPECT_FALSE(dec.Init(std::span<const std::byte>(b).first(3)));
  b.assign(internal::kRansHeaderBytes + 1, std::byte{0xff});
  EXPECT_FALSE(dec.Init(b));  // odd word area
}

TEST(CacheGenTables, SerializedTablesRoundTripWithEscapes) {
  std::mt19937 rng(11);
  for (uint32_t bins : {1u, 2u, 8u, 15u, 16u, 32u, 127u}) {
    for (auto codes : {internal::WeightCodes::kNibble, internal::WeightCodes::kByte}) {
      for (int iter = 0; iter < 50; ++iter) {
        const uint32_t alphabet = 2 * bins + 1;
        std::vector<uint32_t> counts(alphabet, 0);
        if (iter > 0) {
          std::normal_distribution<float> nd(static_cast<float>(bins), 1.0f + iter % 10 * bins / 8.0f);
          for (int i = 0; i < 300; ++i) {
            counts[std::clamp<int>(static_cast<int>(std::lround(nd(rng))), 0, alphabet - 1)]++;
          }
        }
        std::vector<std::byte> bytes;
        internal::AppendTable(counts.data(), bins, codes, iter % 2 == 0, bytes);
        size_t pos = 0;
        FreqTable t;
        internal::TableInfo info;
        ASSERT_TRUE(internal::ParseTable(bytes, pos, bins, codes, t, info)) << bins << " " << int(codes) << " " << iter;
        ASSERT_EQ(pos, bytes.size());
        ASSERT_LE(info.lo + info.width, alphabet);
        ASSERT_EQ(info.escape != 0, info.width < alphabet);
        // Small alphabets: every seen symbol is coded directly.
        if (alphabet <= internal::kMaxTableSymbols) {
          for (uint32_t sym = 0; sym < alphabet; ++sym) {
            if (counts[sym] != 0) {
              EXPECT_TRUE(sym >= info.lo && sym < info.lo + info.width) << sym;
            }
          }
        }
        // Truncated tables are refused.
        for (size_t cut = 0; cut < bytes.size(); ++cut) {
          size_t p2 = 0;
          EXPECT_FALSE(internal::ParseTable(std::span<const std::byte>(bytes).first(cut), p2, bins, codes, t, info));
        }
      }
    }
  }
  // A window past the alphabet and an oversized table are refused.
  const std::byte bad1[] = {std::byte{3}, std::byte{3}, std::byte{0x11}, std::byte{0x01}};
  size_t pos = 0;
  FreqTable t;
  internal::TableInfo info;
  EXPECT_FALSE(internal::ParseTable(bad1, pos, 2, internal::WeightCodes::kNibble, t, info));
  std::vector<std::byte> bad2 = {std::byte{0}, std::byte{40}};
  bad2.resize(64, std::byte{1});
  pos = 0;
  EXPECT_FALSE(internal::ParseTable(bad2, pos, 64, internal::WeightCodes::kByte, t, info));
}

// ---- round trips ----

struct Case {
  KvShape shape;
  uint32_t tps;
};

std::vector<Case> RoundTripCases() {
  std::vector<Case> cases;
  for (DType d : {DType::kFp16, DType::kBf16, DType::kFp32}) {
    cases.push_back({{3, 2, 8, 1, d}, 256});
    cases.push_back({{4, 3, 7, 33, d}, 256});   // odd head_dim, width 21 (not a multiple of 4)
    cases.push_back({{2, 2, 16, 300, d}, 256}); // 2 sub-chunk streams per slice
  }
  cases.push_back({{2, 1, 5, 45, DType::kFp16}, 16});
  cases.push_back({{1, 4, 64, 40, DType::kFp16}, 1});
  return cases;
}

TEST(CacheGenRoundTrip, EveryLevelAnchorAndTablePlacementWithinBound) {
  for (const Case& c : RoundTripCases()) {
    const ModelProfile profile = BuildProfile(c.shape);
    for (int level = 1; level <= 3; ++level) {
      for (bool anchor : {false, true}) {
        for (bool shared : {false, true}) {
          EncodeOptions o = CacheGenOptions(level, anchor, shared ? &profile : nullptr);
          o.max_tokens_per_stream = c.tps;
          const Encoded e = EncodeSmooth(c.shape, o, 1 + level);
          Result<ContainerInfo> info = Inspect(e.bytes);
          ASSERT_TRUE(info.ok()) << info.status().ToString();
          EXPECT_EQ(info->level, level);
          EXPECT_EQ(info->anchor_delta, anchor);
          EXPECT_EQ(info->profile_id, shared ? profile.id() : 0);
          const uint32_t slices = 2 * c.shape.num_layers;
          const uint32_t sub = (c.shape.num_tokens + c.tps - 1) / c.tps;
          EXPECT_EQ(info->num_streams, (shared ? 0 : slices) + slices * sub);
          DecodeOptions d;
          d.profiles = [&](uint64_t id) { return id == profile.id() ? &profile : nullptr; };
          std::vector<std::byte> out(c.shape.RawBytes());
          const Status st = Decode(e.bytes, out, d);
          ASSERT_TRUE(st.ok()) << st.ToString();
          ExpectWithinBound(c.shape, e.input, FromBytes(out, c.shape.dtype), level, anchor, c.tps);
        }
      }
    }
  }
}

TEST(CacheGenRoundTrip, ZeroRowsAndConstantRowsAreExact) {
  const KvShape s{2, 2, 8, 20, DType::kFp16};
  std::vector<float> v(s.NumValues(), 0.0f);
  for (size_t i = v.size() / 2; i < v.size(); ++i) v[i] = -1.5f;
  const std::vector<std::byte> raw = ToBytes(v, s.dtype);
  for (bool anchor : {false, true}) {
    std::vector<std::byte> enc, out(raw.size());
    ASSERT_TRUE(Encode(KvView{s, raw, {}}, CacheGenOptions(2, anchor), enc).ok());
    ASSERT_TRUE(Decode(enc, out, {}).ok());
    EXPECT_EQ(out, raw);
  }
}

TEST(CacheGenRoundTrip, ValuesAtTheFp16LimitStayFinite) {
  const KvShape s{1, 1, 16, 30, DType::kFp16};
  std::vector<float> v(s.NumValues());
  std::mt19937 rng(2);
  for (float& x : v) x = (rng() % 2 ? 65504.0f : -65504.0f) * (rng() % 4 == 0 ? 0.3f : 1.0f);
  const std::vector<std::byte> raw = ToBytes(v, s.dtype);
  for (int level = 1; level <= 3; ++level) {
    for (bool anchor : {false, true}) {
      std::vector<std::byte> enc, out(raw.size());
      ASSERT_TRUE(Encode(KvView{s, raw, {}}, CacheGenOptions(level, anchor), enc).ok());
      ASSERT_TRUE(Decode(enc, out, {}).ok());
      for (float y : FromBytes(out, s.dtype)) ASSERT_TRUE(std::isfinite(y));
    }
  }
}

TEST(CacheGenRoundTrip, ExecutorDecodeEqualsInlineDecode) {
  const KvShape s{4, 2, 32, 300, DType::kFp16};
  const ModelProfile profile = BuildProfile(s);
  ThreadPoolExecutor pool(4);
  for (bool shared : {false, true}) {
    for (bool anchor : {false, true}) {
      EncodeOptions o = CacheGenOptions(2, anchor, shared ? &profile : nullptr);
      o.max_tokens_per_stream = 64;
      const Encoded a = EncodeSmooth(s, o);
      o.executor = &pool;
      const Encoded b = EncodeSmooth(s, o);
      EXPECT_EQ(a.bytes, b.bytes) << "parallel encode must write the same bytes";
      DecodeOptions d;
      d.profiles = [&](uint64_t) { return &profile; };
      std::vector<std::byte> out1(s.RawBytes()), out2(s.RawBytes());
      ASSERT_TRUE(Decode(a.bytes, out1, d).ok());
      d.executor = &pool;
      ASSERT_TRUE(Decode(a.bytes, out2, d).ok());
      EXPECT_EQ(out1, out2);
    }
  }
}

TEST(CacheGenRoundTrip, RejectsNonFiniteInput) {
  const KvShape s{1, 1, 8, 4, DType::kFp32};
  std::vector<float> v(s.NumValues(), 1.0f);
  for (float bad : {NAN, INFINITY}) {
    v[13] = bad;
    const std::vector<std::byte> raw = ToBytes(v, s.dtype);
    std::vector<std::byte> enc;
    const Status st = Encode(KvView{s, raw, {}}, CacheGenOptions(2, false), enc);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("NaN or infinite"), std::string::npos) << st.message();
  }
}

// ---- profiles ----

TEST(CacheGenProfile, SerializeDeserializeRoundTripAndStableId) {
  const KvShape s{3, 2, 16, 1, DType::kFp16};
  const ModelProfile a = BuildProfile(s, 9);
  const ModelProfile b = BuildProfile(s, 9);
  EXPECT_EQ(a.id(), b.id());
  EXPECT_EQ(a.serialized().size(), b.serialized().size());
  EXPECT_NE(a.id(), BuildProfile(s, 10).id());
  Result<ModelProfile> c = ModelProfile::Deserialize(a.serialized());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->id(), a.id());
  EXPECT_TRUE(std::equal(a.serialized().begin(), a.serialized().end(), c->serialized().begin(), c->serialized().end()));
  EXPECT_EQ(c->num_layers(), 3u);
  EXPECT_EQ(c->num_kv_heads(), 2u);
  EXPECT_EQ(c->head_dim(), 16u);
  // A chunk encoded with one copy decodes with the other.
  KvShape chunk = s;
  chunk.num_tokens = 50;
  const Encoded e = EncodeSmooth(chunk, CacheGenOptions(3, true, &a));
  DecodeOptions d;
  d.profiles = [&](uint64_t id) { return id == c->id() ? &*c : nullptr; };
  std::vector<std::byte> out(chunk.RawBytes());
  ASSERT_TRUE(Decode(e.bytes, out, d).ok());
  ExpectWithinBound(chunk, e.input, FromBytes(out, chunk.dtype), 3, true, 256);
}

TEST(CacheGenProfile, TruncatedOrFlippedBytesAreCleanErrors) {
  const ModelProfile p = BuildProfile({2, 1, 8, 1, DType::kFp16});
  const std::vector<std::byte> good(p.serialized().begin(), p.serialized().end());
  for (size_t cut = 0; cut < good.size(); cut += (cut < 64 ? 1 : 97)) {
    Result<ModelProfile> r = ModelProfile::Deserialize(std::span<const std::byte>(good).first(cut));
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_TRUE(r.status().code() == StatusCode::kInvalidArgument || r.status().code() == StatusCode::kDataLoss);
  }
  for (size_t bit = 0; bit < good.size() * 8; bit += 13) {
    std::vector<std::byte> bad = good;
    bad[bit / 8] ^= std::byte(1u << (bit % 8));
    Result<ModelProfile> r = ModelProfile::Deserialize(bad);
    ASSERT_FALSE(r.ok()) << bit;
    if (bit >= 32) {
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
      EXPECT_NE(r.status().message().find("checksum"), std::string::npos);
    }
  }
  std::vector<std::byte> trailing = good;
  trailing.push_back(std::byte{0});
  EXPECT_FALSE(ModelProfile::Deserialize(trailing).ok());
}

TEST(CacheGenProfile, BuildRefusesBadSamples) {
  EXPECT_EQ(ModelProfile::Build({}).status().code(), StatusCode::kInvalidArgument);
  const KvShape a{2, 1, 8, 4, DType::kFp16}, b{2, 2, 8, 4, DType::kFp16};
  const std::vector<std::byte> ra = ToBytes(SmoothKv(a, 1), a.dtype), rb = ToBytes(SmoothKv(b, 1), b.dtype);
  const KvView two[] = {KvView{a, ra, {}}, KvView{b, rb, {}}};
  Result<ModelProfile> r = ModelProfile::Build(two);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("sample 1"), std::string::npos) << r.status().message();
  const KvView one[] = {KvView{a, ra, {}}};
  r = ModelProfile::Build(one);  // 4 tokens < 16
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("sample tokens"), std::string::npos) << r.status().message();
  const KvView short_data[] = {KvView{a, std::span<const std::byte>(ra).first(10), {}}};
  EXPECT_EQ(ModelProfile::Build(short_data).status().code(), StatusCode::kInvalidArgument);
}

TEST(CacheGenProfile, UnknownProfileIsNotFoundWithId) {
  const KvShape s{2, 2, 8, 30, DType::kFp16};
  const ModelProfile p = BuildProfile(s);
  const Encoded e = EncodeSmooth(s, CacheGenOptions(2, false, &p));
  char hex[20];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(p.id()));
  std::vector<std::byte> out(s.RawBytes());
  DecodeOptions none;
  Status st = Decode(e.bytes, out, none);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find(hex), std::string::npos) << st.message();
  DecodeOptions unknown;
  unknown.profiles = [](uint64_t) -> const ModelProfile* { return nullptr; };
  st = Decode(e.bytes, out, unknown);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("unknown cachegen profile"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(hex), std::string::npos) << st.message();
}

TEST(CacheGenProfile, ShapeMismatchIsInvalidArgument) {
  const KvShape s{2, 2, 8, 30, DType::kFp16};
  const ModelProfile p = BuildProfile(s);
  const ModelProfile other = BuildProfile({2, 2, 16, 1, DType::kFp16});
  const Encoded e = EncodeSmooth(s, CacheGenOptions(2, false, &p));
  DecodeOptions d;
  d.profiles = [&](uint64_t) { return &other; };
  std::vector<std::byte> out(s.RawBytes());
  const Status st = Decode(e.bytes, out, d);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("profile"), std::string::npos) << st.message();
  const std::vector<std::byte> raw = ToBytes(SmoothKv(s, 1), s.dtype);
  std::vector<std::byte> enc;
  const Status est = Encode(KvView{s, raw, {}}, CacheGenOptions(2, false, &other), enc);
  EXPECT_EQ(est.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(est.message().find("profile"), std::string::npos) << est.message();
}

// ---- hostile streams (checksums recomputed, so the cachegen decoder itself must cope) ----

TEST(CacheGenHostile, CorruptStreamsFailCleanly) {
  const KvShape s{2, 2, 8, 40, DType::kFp16};
  const std::vector<std::byte> raw = ToBytes(SmoothKv(s, 3), s.dtype);
  const ModelProfile p = BuildProfile(s);
  std::mt19937 rng(17);
  for (bool shared : {false, true}) {
    for (bool anchor : {false, true}) {
      internal::EncodedStreams streams;
      ASSERT_TRUE(internal::EncodeCacheGen(KvView{s, raw, {}}, CacheGenOptions(2, anchor, shared ? &p : nullptr), streams).ok());
      DecodeOptions d;
      d.profiles = [&](uint64_t) { return &p; };
      std::vector<std::byte> out(s.RawBytes()), enc;
      int failures = 0;
      for (int iter = 0; iter < 400; ++iter) {
        internal::EncodedStreams bad = streams;
        auto& victim = bad.streams[rng() % bad.streams.size()];
        switch (iter % 4) {
          case 0:  // flip bits
            if (!victim.empty()) victim[rng() % victim.size()] ^= std::byte(1u << (rng() % 8));
            break;
          case 1:  // truncate
            victim.resize(victim.empty() ? 0 : rng() % victim.size());
            break;
          case 2:  // append
            victim.push_back(std::byte(rng()));
            victim.push_back(std::byte(rng()));
            break;
          default:  // random bytes
            for (auto& b : victim) b = std::byte(rng());
            break;
        }
        ASSERT_TRUE(internal::WriteContainer(CodecId::kCacheGen, s, bad, enc).ok());
        const Status st = Decode(enc, out, d);
        if (!st.ok()) {
          ++failures;
          EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
        }
      }
      EXPECT_GT(failures, 250);
    }
  }
}

TEST(CacheGenHostile, NonFiniteScaleAndWrongStreamCountAreRejected) {
  const KvShape s{1, 1, 8, 5, DType::kFp16};
  const std::vector<std::byte> raw = ToBytes(SmoothKv(s, 3), s.dtype);
  internal::EncodedStreams streams;
  ASSERT_TRUE(internal::EncodeCacheGen(KvView{s, raw, {}}, CacheGenOptions(2, false), streams).ok());
  ASSERT_EQ(streams.streams.size(), 4u);  // 2 table streams + 2 data streams
  std::vector<std::byte> enc, out(s.RawBytes());
  for (float bad : {NAN, INFINITY, -1.0f}) {
    internal::EncodedStreams b = streams;
    std::memcpy(b.streams[2].data(), &bad, 4);
    ASSERT_TRUE(internal::WriteContainer(CodecId::kCacheGen, s, b, enc).ok());
    const Status st = Decode(enc, out, {});
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("scale"), std::string::npos) << st.message();
  }
  internal::EncodedStreams fewer = streams;
  fewer.streams.pop_back();
  ASSERT_TRUE(internal::WriteContainer(CodecId::kCacheGen, s, fewer, enc).ok());
  const Status st = Decode(enc, out, {});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("streams"), std::string::npos) << st.message();
}

// ---- size ----

TEST(CacheGenSize, SmallerThanInt8OnSmoothKv) {
  const KvShape s{8, 4, 64, 256, DType::kFp16};
  const std::vector<std::byte> raw = ToBytes(SmoothKv(s, 21), s.dtype);
  std::vector<std::byte> int8;
  EncodeOptions io;
  io.codec = CodecId::kInt8;
  ASSERT_TRUE(Encode(KvView{s, raw, {}}, io, int8).ok());
  KvShape sample = s;
  const std::vector<std::byte> sample_raw = ToBytes(SmoothKv(sample, 22), s.dtype);
  const KvView views[] = {KvView{sample, sample_raw, {}}};
  Result<ModelProfile> profile = ModelProfile::Build(views);
  ASSERT_TRUE(profile.ok());
  const double values = static_cast<double>(s.NumValues());
  std::printf("int8: %.3f bits/value\n", int8.size() * 8 / values);
  for (int level = 1; level <= 3; ++level) {
    for (bool anchor : {false, true}) {
      for (bool shared : {false, true}) {
        std::vector<std::byte> enc;
        ASSERT_TRUE(Encode(KvView{s, raw, {}}, CacheGenOptions(level, anchor, shared ? &*profile : nullptr), enc).ok());
        std::printf("cachegen level %d anchor %d %s tables: %.3f bits/value\n", level, anchor,
                    shared ? "profile" : "inline ", enc.size() * 8 / values);
        if (level == 2) {
          EXPECT_LT(enc.size() * 2, int8.size());
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvtier::codec
