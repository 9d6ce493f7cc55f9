// The int8 dequantization, direct gather and low-rank key kernels against their CPU twins (label "gpu").
// Fresh random inputs per case, outputs poisoned with 0xFF before each run, every element compared:
// dequantization and gather exactly; low-rank + RoPE within the bound low_rank_keys.h documents (copied
// dims, zero slots and almost every rotated element exact). Without a GPU every test skips and says why.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "data_path_cases.h"
#include "device_test_util.h"
#include "gpu_test_common.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {
namespace {

using testing::DataBytes;

using testing::kDTypes;

using testing::AsByteSpan;
using testing::MustAllocate;

TEST(Int8DequantKernel, EqualsTheTwinForEveryOutputDType) {
  REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  std::mt19937_64 rng(91);
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 10; ++i) {
      const ChunkShape s = testing::RandomInt8Shape(rng, dtype);
      const DataBytes encoded = testing::EncodeInt8(s, testing::RandomChunk(rng, s));
      Result<Int8Payload> host = ParseInt8Container(encoded);
      ASSERT_TRUE(host.ok()) << host.status().ToString();
      const size_t offset = i % 4;  // bodies off 4-byte alignment: scales read byte-wise
      DeviceBuffer body = MustAllocate(host->body.size() + offset);
      ASSERT_TRUE(body.CopyFromHost(host->body, offset).ok());
      const Int8Payload device{s, std::span<const std::byte>(body.data() + offset, host->body.size())};
      for (DType out_dtype : kDTypes) {
        SCOPED_TRACE(testing::DescribeShape(s) + " -> " + std::string(DTypeName(out_dtype)));
        const size_t bytes = Int8OutputBytes(s, out_dtype);
        DeviceBuffer out = MustAllocate(bytes);
        ASSERT_TRUE(out.Fill(0xff).ok());
        const Status st = DequantizeInt8(device, out_dtype, out.span(), stream->get());
        ASSERT_TRUE(st.ok()) << st.ToString();
        ASSERT_TRUE(stream->Synchronize().ok());
        DataBytes got(bytes), want(bytes, std::byte{0xff});
        ASSERT_TRUE(out.CopyToHost(got).ok());
        ASSERT_TRUE(DequantizeInt8Cpu(*host, out_dtype, want).ok());
        ASSERT_EQ(got, want);
      }
    }
  }
}

// Pinned, mapped host memory read by the kernel over the bus.
TEST(GatherKernel, ReadsSelectedBlocksStraightFromMappedHostMemory) {
  REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  std::mt19937_64 rng(92);
  for (int i = 0; i < 30; ++i) {
    testing::GatherCase c = testing::RandomGatherCase(rng);
    const size_t offset = i % 3 == 0 ? 1 + rng() % 15 : 0;  // also unaligned sources: 1-byte path
    SCOPED_TRACE(c.Describe() + " offset " + std::to_string(offset));
    const size_t source_bytes = c.num_blocks * c.block_bytes;
    DataBytes memory(source_bytes + offset + 4096);
    for (std::byte& b : memory) b = std::byte(rng());
    std::byte* source = memory.data() + offset;
    Result<HostRegistration> reg = HostRegistration::Register(source, source_bytes);
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    EXPECT_EQ(reg->host(), source);
    EXPECT_EQ(reg->size(), source_bytes);
    // An out-of-range id: the kernel leaves its slot alone; the twin would refuse, so compare it to poison.
    const bool with_bad_id = i % 5 == 4;
    std::vector<int32_t> ids = c.ids;
    if (with_bad_id) ids.push_back(static_cast<int32_t>(c.num_blocks));
    DeviceBuffer device_ids = MustAllocate(ids.size() * 4);
    ASSERT_TRUE(device_ids.CopyFromHost(AsByteSpan(ids)).ok());
    const BlockGather g{static_cast<const std::byte*>(reg->device_pointer()), c.num_blocks, c.block_bytes,
                        reinterpret_cast<const int32_t*>(device_ids.data()), static_cast<uint32_t>(ids.size())};
    const size_t bytes = GatherOutputBytes(g);
    DeviceBuffer out = MustAllocate(bytes);
    ASSERT_TRUE(out.Fill(0xff).ok());
    const Status st = GatherBlocks(g, out.span(), stream->get());
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_TRUE(stream->Synchronize().ok());
    DataBytes got(bytes);
    ASSERT_TRUE(out.CopyToHost(got).ok());
    DataBytes want(bytes, std::byte{0xff});
    const BlockGather host{source, c.num_blocks, c.block_bytes, c.ids.data(), static_cast<uint32_t>(c.ids.size())};
    ASSERT_TRUE(GatherBlocksCpu(host, std::span(want).first(c.ids.size() * c.block_bytes)).ok());
    ASSERT_EQ(got, want);
  }
}

TEST(GatherKernel, RegistrationIsMovableAndRefusesADoubleRegistration) {
  REQUIRE_GPU();
  DataBytes memory(1 << 16);
  Result<HostRegistration> reg = HostRegistration::Register(memory.data(), memory.size());
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  EXPECT_NE(reg->device_pointer(), nullptr);
  EXPECT_EQ(HostRegistration::Register(memory.data(), memory.size()).status().code(), StatusCode::kFailedPrecondition);
  HostRegistration moved = std::move(reg).value();
  EXPECT_EQ(moved.host(), memory.data());
  moved = HostRegistration(std::move(moved));
  EXPECT_EQ(moved.size(), memory.size());
}

// Distance in units in the last place between two 16-bit floats of the same sign (fp16 or bf16).
int UlpDistance16(uint16_t x, uint16_t y) {
  if ((x ^ y) & 0x8000u) return (x & 0x7fffu) + (y & 0x7fffu);
  return std::abs(int(x & 0x7fffu) - int(y & 0x7fffu));
}

TEST(LowRankKernel, EqualsTheTwinWithinTheDocumentedBound) {
  REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  std::mt19937_64 rng(93);
  uint64_t elements = 0, exact = 0;
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 12; ++i) {
      testing::LowRankCase c = testing::RandomLowRankCase(rng, kMaxDeviceRotaryDim);
      const bool with_bad_id = i % 4 == 3;
      SCOPED_TRACE(c.Describe() + " " + std::string(DTypeName(dtype)) + (with_bad_id ? " bad id" : ""));
      DeviceBuffer a = MustAllocate(c.a.size() * 4), b = MustAllocate(c.b.size() * 4);
      ASSERT_TRUE(a.CopyFromHost(AsByteSpan(c.a)).ok());
      ASSERT_TRUE(b.CopyFromHost(AsByteSpan(c.b)).ok());
      std::vector<int32_t> ids = c.ids;
      if (with_bad_id) ids[0] = 1 << 30;  // the kernel skips that block: its slots stay poisoned
      DeviceBuffer device_ids = MustAllocate(ids.size() * 4);
      ASSERT_TRUE(device_ids.CopyFromHost(AsByteSpan(ids)).ok());
      const LowRankKeysView view{c.shape, reinterpret_cast<const float*>(a.data()),
                                 reinterpret_cast<const float*>(b.data())};
      const KeyBlockSelection sel = c.Selection(reinterpret_cast<const int32_t*>(device_ids.data()));
      const size_t bytes = ReconstructOutputBytes(c.shape, sel, dtype);
      DeviceBuffer out = MustAllocate(bytes);
      ASSERT_TRUE(out.Fill(0xff).ok());
      const Status st = ReconstructKeys(view, sel, c.rope, dtype, out.span(), stream->get());
      ASSERT_TRUE(st.ok()) << st.ToString();
      ASSERT_TRUE(stream->Synchronize().ok());
      DataBytes got(bytes), want(bytes, std::byte{0xff});
      ASSERT_TRUE(out.CopyToHost(got).ok());
      ASSERT_TRUE(ReconstructKeysCpu(c.View(), c.Selection(c.ids.data()), c.rope, dtype, want).ok());
      const size_t per_block = bytes / c.shape.num_layers / ids.size();
      if (with_bad_id) {
        for (uint32_t l = 0; l < c.shape.num_layers; ++l) {
          std::memset(want.data() + l * ids.size() * per_block, 0xff, per_block);  // block 0 of each layer
        }
      }
      // Every element: exact, or (rotated dims only) within 2^-22 * (|x| + |y|) in fp32 / 1 ulp in fp16, bf16.
      const size_t elem = DTypeBytes(dtype), head_dim = c.shape.head_dim;
      for (size_t e = 0; e < bytes / elem; ++e) {
        ++elements;
        if (std::memcmp(got.data() + e * elem, want.data() + e * elem, elem) == 0) {
          ++exact;
          continue;
        }
        const size_t d = e % head_dim;
        ASSERT_LT(d, c.rope.rotary_dim) << "element " << e << ": dims past rotary_dim must be exact";
        if (elem == 2) {
          uint16_t x, y;
          std::memcpy(&x, got.data() + e * 2, 2);
          std::memcpy(&y, want.data() + e * 2, 2);
          ASSERT_LE(UlpDistance16(x, y), 1) << "element " << e;
        } else {
          float x, y;
          std::memcpy(&x, got.data() + e * 4, 4);
          std::memcpy(&y, want.data() + e * 4, 4);
          // |x| + |y| of the pair is at most sqrt(2) * the head's largest rotated magnitude.
          float head_max = 0;
          for (size_t k = 0; k < head_dim; ++k) {
            float v;
            std::memcpy(&v, want.data() + (e - d + k) * 4, 4);
            head_max = std::max(head_max, std::abs(v));
          }
          ASSERT_LE(std::abs(x - y), std::ldexp(2.0f * head_max, -22)) << "element " << e;
        }
      }
    }
  }
  std::printf("low-rank kernel vs twin: %llu of %llu elements bit-identical\n",
              static_cast<unsigned long long>(exact), static_cast<unsigned long long>(elements));
  EXPECT_GE(exact, elements - elements / 1000);
}

}  // namespace
}  // namespace kvtier::gpu
