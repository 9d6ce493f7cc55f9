// fp16 / bf16 conversion: exhaustive over every fp16 value, the bulk (F16C) path against the portable
// scalar functions, and round-to-nearest-even ties.
#include "float_convert.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace kvtier::codec::internal {
namespace {

bool IsHalfNan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool IsBf16Nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }

std::vector<std::byte> AsBytes(const std::vector<uint16_t>& v) {
  std::vector<std::byte> out(v.size() * 2);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::vector<uint16_t> BulkFromFloat(const std::vector<float>& f, DType dtype) {
  std::vector<std::byte> out(f.size() * 2 + 1);
  FromFloat(f.data(), f.size(), dtype, out.data() + 1);  // odd address: any alignment works
  std::vector<uint16_t> h(f.size());
  std::memcpy(h.data(), out.data() + 1, f.size() * 2);
  return h;
}

TEST(FloatConvert, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = HalfToFloat(h);
    if (IsHalfNan(h)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << h;
      EXPECT_TRUE(IsHalfNan(FloatToHalf(f))) << std::hex << h;
      EXPECT_EQ(std::signbit(f), (h & 0x8000u) != 0);
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << std::hex << h;
  }
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));
  EXPECT_TRUE(std::isinf(HalfToFloat(0xfc00)) && HalfToFloat(0xfc00) < 0);
}

TEST(FloatConvert, BulkHalfToFloatMatchesScalarForEveryValue) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<std::byte> bytes(1 + all.size() * 2);
  std::memcpy(bytes.data() + 1, all.data(), all.size() * 2);
  std::vector<float> bulk(all.size());
  ToFloat(bytes.data() + 1, DType::kFp16, all.size(), bulk.data());
  for (uint32_t i = 0; i < 65536; ++i) {
    const float scalar = HalfToFloat(all[i]);
    if (std::isnan(scalar)) {
      EXPECT_TRUE(std::isnan(bulk[i])) << std::hex << i;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(bulk[i]), std::bit_cast<uint32_t>(scalar)) << std::hex << i;
    }
  }
}

// Floats that exercise rounding to fp16: every half, the midpoints between neighbours (ties), one
// float ulp either side of each midpoint, the overflow threshold and random values.
std::vector<float> HardFloatsForHalf() {
  std::vector<float> f;
  for (uint32_t i = 0; i < 0x7c00; ++i) {
    const float a = HalfToFloat(static_cast<uint16_t>(i));
    const float b = HalfToFloat(static_cast<uint16_t>(i + 1));
    const float mid = a + (b - a) / 2;  // exact: halves have 11 significant bits
    for (float v : {a, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      f.push_back(v);
      f.push_back(-v);
    }
  }
  for (float v : {65504.0f, 65519.0f, 65520.0f, 65536.0f, 1e10f, std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN(), std::ldexp(1.0f, -25), std::ldexp(1.0f, -26), 0.0f}) {
    f.push_back(v);
    f.push_back(-v);
  }
  std::mt19937 rng(5);
  for (int i = 0; i < 200000; ++i) f.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  return f;
}

TEST(FloatConvert, BulkFloatToHalfMatchesScalar) {
  const std::vector<float> f = HardFloatsForHalf();
  const std::vector<uint16_t> bulk = BulkFromFloat(f, DType::kFp16);
  for (size_t i = 0; i < f.size(); ++i) {
    const uint16_t scalar = FloatToHalf(f[i]);
    if (std::isnan(f[i])) {
      EXPECT_TRUE(IsHalfNan(bulk[i]) && IsHalfNan(scalar)) << i;
    } else {
      ASSERT_EQ(bulk[i], scalar) << "float bits " << std::hex << std::bit_cast<uint32_t>(f[i]);
    }
  }
}

TEST(FloatConvert, HalfTiesGoToEven) {
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // halfway 0x3c00 / 0x3c01 -> even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // halfway 0x3c01 / 0x3c02 -> even
  EXPECT_EQ(FloatToHalf(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);                           // ties to even = overflow to inf
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);              // half the smallest subnormal -> 0
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -26)), 0x0001);
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -25)), 0x0002);              // 1.5 subnormal steps -> 2 (even)
}

TEST(FloatConvert, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);        // tie -> even (down)
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);    // tie -> even (up)
  EXPECT_EQ(FloatToBf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3f81);
  EXPECT_EQ(FloatToBf16(-1.0f - std::ldexp(1.0f, -8)), 0xbf80);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to inf
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(IsBf16Nan(FloatToBf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(IsBf16Nan(FloatToBf16(std::bit_cast<float>(0x7f800001u))));  // NaN payload only in low bits
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t b = static_cast<uint16_t>(i);
    if (IsBf16Nan(b)) continue;
    EXPECT_EQ(FloatToBf16(Bf16ToFloat(b)), b);
  }
}

TEST(FloatConvert, BulkBf16AndFp32MatchScalar) {
  const std::vector<float> f = HardFloatsForHalf();
  const std::vector<uint16_t> bulk = BulkFromFloat(f, DType::kBf16);
  for (size_t i = 0; i < f.size(); ++i) {
    if (!std::isnan(f[i])) {
      ASSERT_EQ(bulk[i], FloatToBf16(f[i])) << i;
    }
  }
  std::vector<float> back(f.size());
  const auto bytes = AsBytes(bulk);
  ToFloat(bytes.data(), DType::kBf16, bulk.size(), back.data());
  for (size_t i = 0; i < f.size(); ++i) {
    if (!std::isnan(back[i])) {
      ASSERT_EQ(back[i], Bf16ToFloat(bulk[i]));
    }
  }
  std::vector<std::byte> raw(f.size() * 4);
  FromFloat(f.data(), f.size(), DType::kFp32, raw.data());
  std::vector<float> same(f.size());
  ToFloat(raw.data(), DType::kFp32, f.size(), same.data());
  EXPECT_EQ(std::memcmp(same.data(), f.data(), raw.size()), 0);
}

}  // namespace
}  // namespace kvtier::codec::internal
