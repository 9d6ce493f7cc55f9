// CPU twins of int8 dequantization, direct gather and low-rank keys (runs everywhere, CI included): int8
// against the codec's real decoder, gather against a byte-by-byte reference, the factorization's error
// bounds, reconstruction + RoPE against a reference computed in double, every argument check by code and
// message, and the no-GPU behaviour of the device entry points and HostRegistration.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "data_path_cases.h"
#include "gpu_test_common.h"
#include "kvtier/gpu/device.h"

namespace kvtier::gpu {
namespace {

using testing::DataBytes;
using testing::Pick;

using testing::ExpectError;
using testing::kDTypes;

// ---- int8 ----

TEST(Int8DequantTwin, EqualsTheCodecDecoderBitForBit) {
  std::mt19937_64 rng(81);
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 12; ++i) {
      const ChunkShape s = testing::RandomInt8Shape(rng, dtype);
      SCOPED_TRACE(testing::DescribeShape(s));
      const DataBytes chunk = testing::RandomChunk(rng, s);
      const DataBytes encoded = testing::EncodeInt8(s, chunk);
      ASSERT_FALSE(encoded.empty());
      DataBytes want(s.Bytes());
      ASSERT_TRUE(codec::Decode(encoded, want, {}).ok());
      Result<Int8Payload> payload = ParseInt8Container(encoded);
      ASSERT_TRUE(payload.ok()) << payload.status().ToString();
      EXPECT_EQ(payload->shape.Bytes(), s.Bytes());
      DataBytes got(s.Bytes(), std::byte{0xff});
      ASSERT_TRUE(DequantizeInt8Cpu(*payload, dtype, got).ok());
      ASSERT_EQ(got, want);
      // fp32 output: the values before the codec's final rounding; rounding them gives the decoder's bytes.
      DataBytes wide(Int8OutputBytes(s, DType::kFp32), std::byte{0xff});
      ASSERT_TRUE(DequantizeInt8Cpu(*payload, DType::kFp32, wide).ok());
      std::vector<float> values(wide.size() / 4);
      std::memcpy(values.data(), wide.data(), wide.size());
      DataBytes rounded(s.Bytes());
      codec::FloatToElements(values, dtype, rounded);
      ASSERT_EQ(rounded, want);
    }
  }
}

// Rewrites a container's stream, table and header checksums after the test changed its body.
void Reseal(DataBytes& c) {
  uint32_t streams;
  std::memcpy(&streams, c.data() + 28, 4);
  size_t off = 64 + 16 * size_t{streams};
  for (uint32_t i = 0; i < streams; ++i) {
    uint64_t length;
    std::memcpy(&length, c.data() + 64 + 16 * i, 8);
    const uint64_t sum = Checksum64(std::span<const std::byte>(c).subspan(off, length));
    std::memcpy(c.data() + 64 + 16 * i + 8, &sum, 8);
    off += length;
  }
  const uint32_t table = static_cast<uint32_t>(Checksum64(std::span<const std::byte>(c).subspan(64, 16 * streams)));
  std::memcpy(c.data() + 56, &table, 4);
  const uint32_t header = static_cast<uint32_t>(Checksum64(std::span<const std::byte>(c).subspan(0, 60)));
  std::memcpy(c.data() + 60, &header, 4);
}

void ExpectSameRefusal(const DataBytes& encoded, const ChunkShape& s, StatusCode code) {
  DataBytes out(s.Bytes());
  const Status decode = codec::Decode(encoded, out, {});
  const Result<Int8Payload> parse = ParseInt8Container(encoded);
  EXPECT_EQ(decode.code(), code) << decode.ToString();
  EXPECT_EQ(parse.status().code(), code) << parse.status().ToString();
  EXPECT_EQ(parse.status().message(), decode.message());
}

TEST(Int8DequantTwin, ParseRefusesWhereTheDecoderRefuses) {
  std::mt19937_64 rng(82);
  const ChunkShape s{2, 5, 2, 8, DType::kFp16};
  const DataBytes good = testing::EncodeInt8(s, testing::RandomChunk(rng, s));
  const size_t body = 64 + 16 * 2;
  {  // a flipped code byte: the stream checksum
    DataBytes bad = good;
    bad[body + Int8StreamBytes(s) + 50] ^= std::byte{1};
    ExpectSameRefusal(bad, s, StatusCode::kDataLoss);
  }
  {  // a negative scale, checksums intact: the codec's own check
    DataBytes bad = good;
    const float negative = -1.0f;
    std::memcpy(bad.data() + body + Int8StreamBytes(s) + 4 * 3, &negative, 4);  // layer 1, K, token 3
    Reseal(bad);
    ExpectSameRefusal(bad, s, StatusCode::kInvalidArgument);
  }
  {  // a NaN scale
    DataBytes bad = good;
    const float nan = std::nanf("");
    std::memcpy(bad.data() + body + 4 * 7, &nan, 4);  // layer 0, V, token 2
    Reseal(bad);
    ExpectSameRefusal(bad, s, StatusCode::kInvalidArgument);
  }
  {  // codec_param set
    DataBytes bad = good;
    bad[32] = std::byte{1};
    Reseal(bad);
    ExpectSameRefusal(bad, s, StatusCode::kInvalidArgument);
  }
  {  // truncated
    DataBytes bad(good.begin(), good.end() - 1);
    ExpectSameRefusal(bad, s, StatusCode::kInvalidArgument);
  }
  {  // another codec
    DataBytes chunk = testing::RandomChunk(rng, s), raw;
    codec::KvView view{codec::KvShape{2, 2, 8, 5, DType::kFp16}, chunk, {}};
    ASSERT_TRUE(codec::Encode(view, {}, raw).ok());
    ExpectError(ParseInt8Container(raw).status(), StatusCode::kInvalidArgument, "container holds codec raw, not int8");
  }
}

TEST(Int8DequantTwin, MinusOneTwentyEightReadsAsMinusOneTwentySeven) {
  const ChunkShape s{1, 1, 1, 4, DType::kFp32};
  DataBytes body(Int8StreamBytes(s), std::byte{0});
  const float scale = 3.0f;
  std::memcpy(body.data(), &scale, 4);
  body[8] = std::byte{0x80};  // K code 0 = -128
  body[9] = std::byte{0x81};  // -127
  DataBytes out(Int8OutputBytes(s, DType::kFp32));
  ASSERT_TRUE(DequantizeInt8Cpu(Int8Payload{s, body}, DType::kFp32, out).ok());
  float v[2];
  std::memcpy(v, out.data(), 8);
  EXPECT_EQ(v[0], -127.0f * (3.0f / 127.0f));
  EXPECT_EQ(v[0], v[1]);
}

TEST(Int8DequantTwin, Checks) {
  const ChunkShape s{2, 3, 1, 4, DType::kFp16};
  DataBytes body(2 * Int8StreamBytes(s), std::byte{0});
  DataBytes out(Int8OutputBytes(s, DType::kFp16));
  const Int8Payload good{s, body};
  ASSERT_TRUE(DequantizeInt8Cpu(good, DType::kFp16, out).ok());
  ExpectError(DequantizeInt8Cpu(Int8Payload{s, std::span(body).first(body.size() - 1)}, DType::kFp16, out),
              StatusCode::kInvalidArgument, "int8 body of 95 bytes is not 2 streams of 48 bytes");
  ExpectError(DequantizeInt8Cpu(good, DType::kUnspecified, out), StatusCode::kInvalidArgument,
              "output dtype must be fp16, bf16 or fp32");
  ExpectError(DequantizeInt8Cpu(good, DType::kFp32, out), StatusCode::kInvalidArgument,
              "int8 output of 96 bytes is not the 192 bytes its shape needs");
  ExpectError(DequantizeInt8Cpu(good, DType::kFp16, std::span(out).subspan(1)), StatusCode::kInvalidArgument,
              "int8 output of 95 bytes");
  DataBytes wide(Int8OutputBytes(s, DType::kFp16) + 1);
  ExpectError(DequantizeInt8Cpu(good, DType::kFp16, std::span(wide).subspan(1)), StatusCode::kInvalidArgument,
              "output is not aligned to the 2-byte element");
  ExpectError(DequantizeInt8Cpu(Int8Payload{ChunkShape{0, 3, 1, 4, DType::kFp16}, body}, DType::kFp16, out),
              StatusCode::kInvalidArgument, "num_layers is 0");
  const float negative = -2.0f;
  std::memcpy(body.data() + Int8StreamBytes(s) + 4 * 4, &negative, 4);  // layer 1, V, token 1
  ExpectError(DequantizeInt8Cpu(good, DType::kFp16, out), StatusCode::kInvalidArgument,
              "int8 stream 1: scale of token 1 is negative or not finite");
  // The device entry point checks the same arguments (not the scales: it cannot read them), then says no GPU.
  ExpectError(DequantizeInt8(good, DType::kFp32, out), StatusCode::kInvalidArgument, "int8 output of 96 bytes");
  if (!GpuAvailable()) {
    EXPECT_EQ(DequantizeInt8(good, DType::kFp16, out).code(), StatusCode::kUnavailable);
  }
}

// ---- direct gather ----

TEST(GatherTwin, EqualsANaiveGather) {
  std::mt19937_64 rng(83);
  for (int i = 0; i < 40; ++i) {
    const testing::GatherCase c = testing::RandomGatherCase(rng);
    SCOPED_TRACE(c.Describe());
    DataBytes source(c.num_blocks * c.block_bytes);
    for (std::byte& b : source) b = std::byte(rng());
    DataBytes got(c.ids.size() * c.block_bytes, std::byte{0xff});
    const BlockGather g{source.data(), c.num_blocks, c.block_bytes, c.ids.data(), static_cast<uint32_t>(c.ids.size())};
    ASSERT_EQ(GatherOutputBytes(g), got.size());
    ASSERT_TRUE(GatherBlocksCpu(g, got).ok());
    ASSERT_EQ(got, testing::NaiveGather(source.data(), c));
  }
}

TEST(GatherTwin, Checks) {
  DataBytes source(4 * 8);
  std::vector<int32_t> ids{0, 3, 1};
  DataBytes out(3 * 8);
  BlockGather g{source.data(), 4, 8, ids.data(), 3};
  ASSERT_TRUE(GatherBlocksCpu(g, out).ok());
  ExpectError(GatherBlocksCpu(g, std::span(out).first(23)), StatusCode::kInvalidArgument,
              "gather output of 23 bytes is not 3 blocks x 8 bytes = 24");
  ids[1] = 4;
  ExpectError(GatherBlocksCpu(g, out), StatusCode::kInvalidArgument, "block_ids[1] = 4 is outside the source's 4 blocks");
  ids[1] = -1;
  ExpectError(GatherBlocksCpu(g, out), StatusCode::kInvalidArgument, "block_ids[1] = -1 is outside");
  // The device entry point cannot read the ids: the rest of the checks, then no GPU.
  if (!GpuAvailable()) {
    EXPECT_EQ(GatherBlocks(g, out).code(), StatusCode::kUnavailable);
  }
  BlockGather bad = g;
  bad.num_blocks = 0;
  ExpectError(GatherBlocksCpu(bad, out), StatusCode::kInvalidArgument, "num_blocks is 0");
  ExpectError(GatherBlocks(bad, out), StatusCode::kInvalidArgument, "num_blocks is 0");
  bad = g;
  bad.block_bytes = 0;
  ExpectError(GatherBlocksCpu(bad, out), StatusCode::kInvalidArgument, "block_bytes is 0");
  bad = g;
  bad.num_selected = 0;
  ExpectError(GatherBlocksCpu(bad, out), StatusCode::kInvalidArgument, "num_selected is 0");
  bad = g;
  bad.source = nullptr;
  ExpectError(GatherBlocks(bad, out), StatusCode::kInvalidArgument, "source is null");
  bad = g;
  bad.block_ids = nullptr;
  ExpectError(GatherBlocksCpu(bad, out), StatusCode::kInvalidArgument, "block_ids is null");
  std::vector<int32_t> shifted(g.num_selected + 1);  // two bytes in: a GPU could not read it
  bad = g;
  bad.block_ids = reinterpret_cast<const int32_t*>(reinterpret_cast<const std::byte*>(shifted.data()) + 2);
  ExpectError(GatherBlocksCpu(bad, out), StatusCode::kInvalidArgument, "block_ids is not 4-byte aligned");
}

TEST(HostRegistrationTest, WithoutAGpuNothingIsRegistered) {
  DataBytes memory(4096);
  ExpectError(HostRegistration::Register(nullptr, 16).status(), StatusCode::kInvalidArgument,
              "host range to register is null or empty");
  ExpectError(HostRegistration::Register(memory.data(), 0).status(), StatusCode::kInvalidArgument,
              "host range to register is null or empty");
  if (GpuAvailable()) GTEST_SKIP() << "a GPU is present";
  EXPECT_EQ(HostRegistration::Register(memory.data(), memory.size()).status().code(), StatusCode::kUnavailable);
}

// ---- low-rank keys ----

// Keys of rank `true_rank` (P x Q, entries N(0,1)) plus noise N(0, noise), in fp32.
DataBytes LowRankPlusNoise(std::mt19937_64& rng, const ChunkShape& s, uint32_t true_rank, float noise) {
  std::normal_distribution<double> normal(0.0, 1.0);
  const size_t c = size_t{s.num_kv_heads} * s.head_dim;
  std::vector<float> values(s.Bytes() / 4);
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    std::vector<double> p(size_t{s.num_tokens} * true_rank), q(size_t{true_rank} * c);
    for (double& v : p) v = normal(rng);
    for (double& v : q) v = normal(rng);
    for (int kv = 0; kv < 2; ++kv) {
      for (uint32_t t = 0; t < s.num_tokens; ++t) {
        for (size_t j = 0; j < c; ++j) {
          double x = 0;
          for (uint32_t k = 0; k < true_rank; ++k) x += p[t * true_rank + k] * q[k * c + j];
          values[((size_t{l} * 2 + kv) * s.num_tokens + t) * c + j] = static_cast<float>(x + noise * normal(rng));
        }
      }
    }
  }
  DataBytes bytes(s.Bytes());
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// ||K_l - A_l B_l||_F / ||K_l||_F of every layer, in double from the stored fp32 factors.
std::vector<double> ActualErrors(const ChunkShape& s, const DataBytes& chunk, const LowRankKeys& f) {
  const size_t c = f.shape.Channels(), r = f.shape.rank;
  std::vector<double> errors;
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    double diff = 0, norm = 0;
    for (uint32_t t = 0; t < s.num_tokens; ++t) {
      for (size_t j = 0; j < c; ++j) {
        float k;
        std::memcpy(&k, chunk.data() + (((size_t{l} * 2) * s.num_tokens + t) * c + j) * 4, 4);
        double x = 0;
        for (size_t m = 0; m < r; ++m) {
          x += double{f.a[(size_t{l} * s.num_tokens + t) * r + m]} * f.b[(size_t{l} * r + m) * c + j];
        }
        diff += (x - k) * (x - k);
        norm += double{k} * k;
      }
    }
    errors.push_back(norm > 0 ? std::sqrt(diff / norm) : 0.0);
  }
  return errors;
}

TEST(LowRankKeysTwin, FactorizationIsExactForDataOfRankAtMostR) {
  std::mt19937_64 rng(84);
  for (int i = 0; i < 12; ++i) {
    const ChunkShape s{Pick(rng, 1, 3), Pick(rng, 2, 60), Pick(rng, 1, 4), Pick(rng, 2, 40), DType::kFp32};
    const uint32_t limit = std::min<uint32_t>(s.num_tokens, s.num_kv_heads * s.head_dim);
    const uint32_t true_rank = Pick(rng, 1, std::min<uint32_t>(limit, 12));
    const uint32_t rank = Pick(rng, true_rank, std::min<uint32_t>(limit, true_rank + 4));
    SCOPED_TRACE(testing::DescribeShape(s) + " true rank " + std::to_string(true_rank) + " rank " +
                 std::to_string(rank));
    const DataBytes chunk = LowRankPlusNoise(rng, s, true_rank, 0.0f);
    Result<LowRankKeys> f = FactorizeKeys(s, chunk, rank);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    const std::vector<double> actual = ActualErrors(s, chunk, *f);
    for (uint32_t l = 0; l < s.num_layers; ++l) {
      EXPECT_LT(f->relative_error[l], 1e-6) << "layer " << l;  // dropped singular values: rounding only
      EXPECT_LT(actual[l], 1e-6) << "layer " << l;              // the fp32 factors' rounding
    }
  }
}

TEST(LowRankKeysTwin, FactorizationErrorVersusRank) {
  // Reported in gpu/README.md. Per layer: the reported error (dropped singular values) equals the actual
  // error of the fp32 factors, never grows with the rank, and vanishes at full rank.
  std::mt19937_64 rng(85);
  const ChunkShape s{1, 64, 2, 32, DType::kFp32};  // K_l: 64 x 64
  struct Data {
    const char* name;
    uint32_t true_rank;
    float noise;
  };
  for (const Data& d : {Data{"random", 64, 0.0f}, Data{"rank 8 + noise 0.1", 8, 0.1f},
                        Data{"rank 16 + noise 0.01", 16, 0.01f}}) {
    const DataBytes chunk = LowRankPlusNoise(rng, s, d.true_rank, d.noise);
    std::string line = std::string(d.name) + ":";
    double previous = 1.0;
    for (uint32_t rank : {1u, 4u, 8u, 16u, 32u, 48u, 64u}) {
      Result<LowRankKeys> f = FactorizeKeys(s, chunk, rank);
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      const double reported = f->relative_error[0], actual = ActualErrors(s, chunk, *f)[0];
      EXPECT_NEAR(reported, actual, 1e-5) << d.name << " rank " << rank;
      EXPECT_LE(reported, previous + 1e-12) << d.name << " rank " << rank;
      previous = reported;
      if (rank == 64) {
        EXPECT_LT(actual, 1e-6);
      }
      if (d.true_rank < 64 && rank >= d.true_rank) {
        // The noise floor: what is left is at most the noise's share of the data.
        EXPECT_LT(reported, 2.0 * d.noise) << d.name << " rank " << rank;
      }
      line += " r" + std::to_string(rank) + "=" + std::to_string(actual);
    }
    std::printf("relative Frobenius error %s\n", line.c_str());
  }
}

TEST(LowRankKeysTwin, FactorizationIsDeterministicAndReadsEveryDType) {
  std::mt19937_64 rng(86);
  for (DType dtype : kDTypes) {
    const ChunkShape s{2, 20, 2, 16, dtype};
    const DataBytes chunk = testing::RandomChunk(rng, s);
    Result<LowRankKeys> x = FactorizeKeys(s, chunk, 6), y = FactorizeKeys(s, chunk, 6);
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x->a, y->a);
    EXPECT_EQ(x->b, y->b);
    EXPECT_EQ(x->relative_error, y->relative_error);
  }
}

TEST(LowRankKeysTwin, FactorizationChecks) {
  const ChunkShape s{1, 4, 1, 4, DType::kFp32};
  DataBytes chunk(s.Bytes(), std::byte{0});
  ExpectError(FactorizeKeys(s, chunk, 0).status(), StatusCode::kInvalidArgument,
              "rank 0 must be in 1..min(num_tokens, kv_heads * head_dim) = 4");
  ExpectError(FactorizeKeys(s, chunk, 5).status(), StatusCode::kInvalidArgument, "rank 5 must be in 1..");
  ExpectError(FactorizeKeys(s, std::span(chunk).first(8), 2).status(), StatusCode::kInvalidArgument,
              "chunk of 8 bytes is not 128 bytes for its shape");
  const float inf = INFINITY;
  std::memcpy(chunk.data() + (2 * 4 + 3) * 4, &inf, 4);  // K, token 2, channel 3
  ExpectError(FactorizeKeys(s, chunk, 2).status(), StatusCode::kInvalidArgument,
              "key of layer 0, token 2, channel 3 is not finite");
  std::memset(chunk.data(), 0, chunk.size());
  Result<LowRankKeys> zero = FactorizeKeys(s, chunk, 2);
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->relative_error[0], 0.0);
}

// Key (layer, token t, channel) at position first_position + t with exact RoPE, all in double from the
// fp32 factors; `bound` gets the sum of |a_j b_j| of the element and its rotary partner.
struct Reference {
  double value = 0;
  double magnitude = 0;
};

Reference ReferenceKey(const testing::LowRankCase& c, uint32_t l, uint64_t t, uint32_t head, uint32_t d) {
  const LowRankShape& s = c.shape;
  const uint64_t channels = s.Channels();
  auto dot = [&](uint32_t dim, double* magnitude) {
    double x = 0;
    for (uint32_t j = 0; j < s.rank; ++j) {
      const double term = double{c.a[(uint64_t{l} * s.num_tokens + t) * s.rank + j]} *
                          c.b[(uint64_t{l} * s.rank + j) * channels + uint64_t{head} * s.head_dim + dim];
      x += term;
      *magnitude += std::abs(term);
    }
    return x;
  };
  Reference r;
  const uint32_t rot = c.rope.rotary_dim, half = rot / 2;
  if (d >= rot) {
    r.value = dot(d, &r.magnitude);
    return r;
  }
  const bool neox = c.rope.style == RopeStyle::kNeox;
  const uint32_t pair = neox ? d % half : d / 2;
  const bool first = neox ? d < half : d % 2 == 0;
  const uint32_t partner = neox ? (first ? d + half : d - half) : (first ? d + 1 : d - 1);
  const double x = dot(first ? d : partner, &r.magnitude), y = dot(first ? partner : d, &r.magnitude);
  const double angle = static_cast<double>(c.first_position + static_cast<int64_t>(t)) *
                       std::pow(c.rope.theta, -2.0 * pair / rot);
  r.value = first ? x * std::cos(angle) - y * std::sin(angle) : x * std::sin(angle) + y * std::cos(angle);
  return r;
}

double ReadOut(const DataBytes& out, uint64_t index, DType dtype) {
  float v;
  codec::ElementsToFloat(std::span<const std::byte>(out).subspan(index * DTypeBytes(dtype), DTypeBytes(dtype)),
                         dtype, std::span<float>(&v, 1));
  return v;
}

TEST(LowRankKeysTwin, ReconstructionWithRopeMatchesADoubleReference) {
  std::mt19937_64 rng(87);
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 10; ++i) {
      const testing::LowRankCase c = testing::RandomLowRankCase(rng);
      SCOPED_TRACE(c.Describe() + " " + std::string(DTypeName(dtype)));
      const KeyBlockSelection sel = c.Selection(c.ids.data());
      DataBytes out(ReconstructOutputBytes(c.shape, sel, dtype), std::byte{0xff});
      ASSERT_TRUE(ReconstructKeysCpu(c.View(), sel, c.rope, dtype, out).ok());
      // fp32 arithmetic: rank products and sums, the float cos/sin and the rotation, relative to the
      // magnitude of the terms; then one rounding to the output dtype.
      const double relative = dtype == DType::kFp32 ? 0.0 : dtype == DType::kFp16 ? std::ldexp(1.0, -11)
                                                                                   : std::ldexp(1.0, -8);
      const LowRankShape& s = c.shape;
      uint64_t index = 0;
      for (uint32_t l = 0; l < s.num_layers; ++l) {
        for (int32_t id : c.ids) {
          for (uint32_t slot = 0; slot < c.block_size; ++slot) {
            const uint64_t t = uint64_t(id) * c.block_size + slot;
            for (uint32_t h = 0; h < s.num_kv_heads; ++h) {
              for (uint32_t d = 0; d < s.head_dim; ++d, ++index) {
                const double got = ReadOut(out, index, dtype);
                if (t >= s.num_tokens) {
                  ASSERT_EQ(got, 0.0) << "slot past the chunk's end";
                  continue;
                }
                const Reference r = ReferenceKey(c, l, t, h, d);
                const double bound = (s.rank + 8) * std::ldexp(r.magnitude, -24) +
                                     relative * (std::abs(r.value) + 1e-6) + 1e-7 * (dtype == DType::kFp16);
                ASSERT_LE(std::abs(got - r.value), bound)
                    << "layer " << l << " block " << id << " slot " << slot << " head " << h << " dim " << d;
              }
            }
          }
        }
      }
      ASSERT_EQ(index * DTypeBytes(dtype), out.size());
    }
  }
}

TEST(LowRankKeysTwin, FactorizeThenReconstructGivesTheRotatedKeys) {
  // The ShadowKV path end to end: exact low-rank pre-RoPE keys, factorized at put time, then the keys of
  // two blocks reconstructed at a new position equal RoPE of the original keys there.
  std::mt19937_64 rng(88);
  const ChunkShape s{2, 40, 2, 32, DType::kFp32};
  const DataBytes chunk = LowRankPlusNoise(rng, s, 6, 0.0f);
  Result<LowRankKeys> f = FactorizeKeys(s, chunk, 8);
  ASSERT_TRUE(f.ok());
  const std::vector<int32_t> ids{4, 1};
  const KeyBlockSelection sel{ids.data(), 2, 8, 1000};
  const RopeParams rope{RopeStyle::kNeox, 32, 10000.0};
  DataBytes out(ReconstructOutputBytes(f->shape, sel, DType::kFp32));
  ASSERT_TRUE(ReconstructKeysCpu(LowRankKeysView{f->shape, f->a.data(), f->b.data()}, sel, rope, DType::kFp32, out).ok());
  const uint32_t c = 64;
  double max_error = 0, max_value = 0;
  for (uint32_t l = 0; l < 2; ++l) {
    for (uint32_t i = 0; i < 2; ++i) {
      for (uint32_t slot = 0; slot < 8; ++slot) {
        const uint32_t t = ids[i] * 8 + slot;
        for (uint32_t h = 0; h < 2; ++h) {
          const float* key = reinterpret_cast<const float*>(chunk.data()) + ((l * 2) * 40 + t) * c + h * 32;
          const float* got = reinterpret_cast<const float*>(out.data()) + ((l * 2 + i) * 8 + slot) * c + h * 32;
          for (uint32_t p = 0; p < 16; ++p) {
            const double angle = (1000.0 + t) * std::pow(10000.0, -2.0 * p / 32);
            const double x = key[p], y = key[p + 16];
            max_error = std::max({max_error, std::abs(got[p] - (x * std::cos(angle) - y * std::sin(angle))),
                                  std::abs(got[p + 16] - (x * std::sin(angle) + y * std::cos(angle)))});
            max_value = std::max({max_value, std::abs(x), std::abs(y)});
          }
        }
      }
    }
  }
  EXPECT_LT(max_error, 1e-5 * max_value);
}

TEST(LowRankKeysTwin, ReconstructionChecks) {
  std::vector<float> a(1 * 10 * 2, 0.5f), b(1 * 2 * 8, 0.25f);
  const LowRankKeysView keys{LowRankShape{1, 10, 1, 8, 2}, a.data(), b.data()};
  std::vector<int32_t> ids{2, 0};
  const KeyBlockSelection sel{ids.data(), 2, 4, 7};
  const RopeParams rope{RopeStyle::kGptj, 8, 10000.0};
  DataBytes out(ReconstructOutputBytes(keys.shape, sel, DType::kFp16));
  ASSERT_EQ(out.size(), 1u * 2 * 4 * 8 * 2);
  ASSERT_TRUE(ReconstructKeysCpu(keys, sel, rope, DType::kFp16, out).ok());
  ExpectError(ReconstructKeysCpu(keys, sel, rope, DType::kFp32, out), StatusCode::kInvalidArgument,
              "reconstruct output of 128 bytes is not the 256 bytes its shape needs");
  ExpectError(ReconstructKeysCpu(keys, sel, rope, DType::kUnspecified, out), StatusCode::kInvalidArgument,
              "output dtype must be fp16, bf16 or fp32");
  ids[0] = 3;
  ExpectError(ReconstructKeysCpu(keys, sel, rope, DType::kFp16, out), StatusCode::kInvalidArgument,
              "block_ids[0] = 3 is outside the chunk's 3 blocks of 4 tokens");
  ids[0] = 2;
  KeyBlockSelection bad = sel;
  bad.first_position = -1;
  ExpectError(ReconstructKeysCpu(keys, bad, rope, DType::kFp16, out), StatusCode::kInvalidArgument,
              "first_position -1 is outside [0, 2^31 - 10]");
  bad = sel;
  bad.block_size = 0;
  ExpectError(ReconstructKeysCpu(keys, bad, rope, DType::kFp16, out), StatusCode::kInvalidArgument, "block_size is 0");
  bad = sel;
  bad.block_ids = nullptr;
  ExpectError(ReconstructKeysCpu(keys, bad, rope, DType::kFp16, out), StatusCode::kInvalidArgument,
              "block_ids is null");
  LowRankKeysView no_b = keys;
  no_b.b = nullptr;
  ExpectError(ReconstructKeysCpu(no_b, sel, rope, DType::kFp16, out), StatusCode::kInvalidArgument,
              "factor a or b is null");
  // Two bytes into their arrays: a GPU could not read them (never dereferenced here either).
  std::vector<float> shifted_b(keys.shape.BFloats() + 1);
  LowRankKeysView misaligned_b = keys;
  misaligned_b.b = reinterpret_cast<const float*>(reinterpret_cast<const std::byte*>(shifted_b.data()) + 2);
  ExpectError(ReconstructKeysCpu(misaligned_b, sel, rope, DType::kFp16, out), StatusCode::kInvalidArgument,
              "factor a or b is not 4-byte aligned");
  std::vector<int32_t> shifted_ids(sel.num_selected + 1);
  bad = sel;
  bad.block_ids = reinterpret_cast<const int32_t*>(reinterpret_cast<const std::byte*>(shifted_ids.data()) + 2);
  ExpectError(ReconstructKeysCpu(keys, bad, rope, DType::kFp16, out), StatusCode::kInvalidArgument,
              "block_ids is not 4-byte aligned");
  LowRankKeysView big_rank = keys;
  big_rank.shape.rank = 9;
  ExpectError(ReconstructKeysCpu(big_rank, sel, rope, DType::kFp16, out), StatusCode::kInvalidArgument,
              "rank 9 must be in 1..min(num_tokens, kv_heads * head_dim) = 8");
  ExpectError(ReconstructKeysCpu(keys, sel, RopeParams{RopeStyle::kNone, 8, 10000.0}, DType::kFp16, out),
              StatusCode::kInvalidArgument, "rope style must be NeoX or GPT-J");
  ExpectError(ReconstructKeysCpu(keys, sel, RopeParams{RopeStyle::kNeox, 10, 10000.0}, DType::kFp16, out),
              StatusCode::kInvalidArgument, "rotary_dim 10 exceeds head_dim 8");
  // The device entry point: the same checks but not the ids (device memory), its rotary limit, then no GPU.
  std::vector<float> wide_b(1 * 2 * 512, 0.0f);
  const LowRankKeysView wide{LowRankShape{1, 10, 1, 512, 2}, a.data(), wide_b.data()};
  DataBytes wide_out(ReconstructOutputBytes(wide.shape, sel, DType::kFp16));
  ExpectError(ReconstructKeys(wide, sel, RopeParams{RopeStyle::kNeox, 512, 10000.0}, DType::kFp16, wide_out),
              StatusCode::kInvalidArgument, "rotary_dim 512 exceeds the device kernels' limit of 256");
  EXPECT_TRUE(ReconstructKeysCpu(wide, sel, RopeParams{RopeStyle::kNeox, 512, 10000.0}, DType::kFp16, wide_out).ok());
  ids[0] = 99;
  if (!GpuAvailable()) {
    EXPECT_EQ(ReconstructKeys(keys, sel, rope, DType::kFp16, out).code(), StatusCode::kUnavailable);
  }
}

}  // namespace
}  // namespace kvtier::gpu
