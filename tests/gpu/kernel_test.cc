// The CUDA kernels against their CPU twins (label "gpu"). Fresh random inputs per case, outputs poisoned
// with 0xFF before each run, every byte compared: pack and unpack are exact copies, and the RoPE kernels
// are documented to equal the twin bit for bit on finite inputs (rope.h), so they are compared exactly too.
// Without a GPU every test skips and says why.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/paged_kv.h"
#include "kvtier/gpu/rope.h"
#include "kvtier/gpu/stream.h"
#include "device_test_util.h"
#include "gpu_test_common.h"
#include "paged_kv_cases.h"

namespace kvtier::gpu {
namespace {

using testing::Bytes;
using testing::HostCache;
using testing::PagedCase;
using testing::RandomCase;

constexpr std::byte kPoison{0xff};
using testing::kDTypes;

using testing::AsByteSpan;
using testing::MustAllocate;

// A paged cache in device memory; `offset` shifts every layer's base (to exercise narrower vector widths).
struct DeviceCache {
  PagedKvShape shape;
  size_t offset = 0;
  std::vector<DeviceBuffer> k, v;
  std::vector<void*> k_ptrs, v_ptrs;

  DeviceCache(const HostCache& host, size_t off) : shape(host.shape), offset(off) {
    for (uint32_t l = 0; l < shape.num_layers; ++l) {
      k.push_back(MustAllocate(shape.LayerBytes() + offset));
      v.push_back(MustAllocate(shape.LayerBytes() + offset));
      k_ptrs.push_back(k.back().data() + offset);
      v_ptrs.push_back(v.back().data() + offset);
    }
    Upload(host);
  }
  void Upload(const HostCache& host) {
    for (uint32_t l = 0; l < shape.num_layers; ++l) {
      ASSERT_TRUE(k[l].CopyFromHost(host.k[l], offset).ok());
      ASSERT_TRUE(v[l].CopyFromHost(host.v[l], offset).ok());
    }
  }
  HostCache Download() const {
    HostCache host(shape, std::byte{0});
    for (uint32_t l = 0; l < shape.num_layers; ++l) {
      EXPECT_TRUE(k[l].CopyToHost(host.k[l], offset).ok());
      EXPECT_TRUE(v[l].CopyToHost(host.v[l], offset).ok());
    }
    return host;
  }
  PagedKvCache View() const { return PagedKvCache{shape, k_ptrs, v_ptrs}; }
};

Stream MustStream() {
  Result<Stream> s = Stream::Create();
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

// Offsets that keep element alignment but break 16-, 8- and 4-byte alignment in turn.
size_t OffsetFor(int i, DType dtype) {
  const size_t elem = DTypeBytes(dtype);
  const size_t offsets[] = {0, 0, elem, 2 * elem, 4 * elem};
  return offsets[i % 5] % 16;
}

void CheckPack(const PagedCase& c, std::mt19937_64& rng, size_t offset, Stream& stream) {
  SCOPED_TRACE(c.Describe() + " offset " + std::to_string(offset));
  HostCache host(c.shape, std::byte{0});
  host.Randomize(rng);
  DeviceCache device(host, offset);
  DeviceBuffer table = MustAllocate(c.table.size() * 4);
  ASSERT_TRUE(table.CopyFromHost(AsByteSpan(c.table)).ok());
  const size_t bytes = c.shape.ChunkBytes(c.num_tokens);
  DeviceBuffer chunk = MustAllocate(bytes + offset);
  ASSERT_TRUE(chunk.Fill(0xff).ok());
  const Status s = PackPagedKv(device.View(), c.SliceWith(reinterpret_cast<const int32_t*>(table.data())),
                               std::span<std::byte>(chunk.data() + offset, bytes), stream.get());
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(stream.Synchronize().ok());
  Bytes got(bytes);
  ASSERT_TRUE(chunk.CopyToHost(got, offset).ok());
  Bytes want(bytes, kPoison);
  ASSERT_TRUE(PackPagedKvCpu(host.View(), c.Slice(), want).ok());
  ASSERT_EQ(got, want);
}

void CheckUnpack(const PagedCase& c, std::mt19937_64& rng, size_t offset, const UnpackOptions& options,
                 Stream& stream) {
  SCOPED_TRACE(c.Describe() + " offset " + std::to_string(offset) + " delta " +
               std::to_string(options.rerotate_delta));
  const size_t bytes = c.shape.ChunkBytes(c.num_tokens);
  const Bytes chunk = options.rerotate_delta != 0 ? testing::RandomValues(rng, c.shape.dtype, bytes)
                                                  : testing::RandomBytes(rng, bytes);
  HostCache want(c.shape, kPoison);
  DeviceCache device(want, offset);
  DeviceBuffer table = MustAllocate(c.table.size() * 4);
  ASSERT_TRUE(table.CopyFromHost(AsByteSpan(c.table)).ok());
  DeviceBuffer device_chunk = MustAllocate(bytes + offset);
  ASSERT_TRUE(device_chunk.CopyFromHost(chunk, offset).ok());
  const Status s = UnpackPagedKv(device.View(), c.SliceWith(reinterpret_cast<const int32_t*>(table.data())),
                                 std::span<const std::byte>(device_chunk.data() + offset, bytes), options,
                                 stream.get());
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(stream.Synchronize().ok());
  ASSERT_TRUE(UnpackPagedKvCpu(want.View(), c.Slice(), chunk, options).ok());
  const HostCache got = device.Download();
  ASSERT_TRUE(got == want);
}

TEST(GpuPagedKv, PackEqualsTwin) {
  REQUIRE_GPU();
  std::mt19937_64 rng(101);
  Stream stream = MustStream();
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 25; ++i) CheckPack(RandomCase(rng, dtype), rng, OffsetFor(i, dtype), stream);
  }
}

TEST(GpuPagedKv, UnpackEqualsTwin) {
  REQUIRE_GPU();
  std::mt19937_64 rng(102);
  Stream stream = MustStream();
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 25; ++i) CheckUnpack(RandomCase(rng, dtype), rng, OffsetFor(i, dtype), {}, stream);
  }
}

TEST(GpuPagedKv, FusedRerotationEqualsTwin) {
  REQUIRE_GPU();
  std::mt19937_64 rng(103);
  Stream stream = MustStream();
  for (DType dtype : kDTypes) {
    for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kGptj}) {
      for (int i = 0; i < 10; ++i) {
        const PagedCase c = RandomCase(rng, dtype, /*even_head_dim=*/true);
        UnpackOptions options;
        const uint32_t max_rotary = std::min<uint32_t>(c.shape.head_dim, kMaxDeviceRotaryDim);
        options.rope = RopeParams{style, 2 * testing::Uniform(rng, 1, max_rotary / 2), i % 2 ? 1e4 : 5e5};
        options.rerotate_delta = static_cast<int64_t>(testing::Uniform(rng, 1, 200000)) - 100000;
        CheckUnpack(c, rng, OffsetFor(i, dtype), options, stream);
      }
    }
  }
}

TEST(GpuPagedKv, MoreLayersThanOneLaunchCarries) {
  REQUIRE_GPU();
  std::mt19937_64 rng(104);
  Stream stream = MustStream();
  PagedCase c;
  c.shape = PagedKvShape{kMaxLayersPerLaunch + 3, 9, 16, 2, 64, DType::kFp16};
  c.table = {3, 8, 0, 5, 1};
  c.first_token = 13;
  c.num_tokens = 50;  // positions 13..62: blocks 0..3, the first and the last partial
  CheckPack(c, rng, 0, stream);
  UnpackOptions options;
  options.rope = RopeParams{RopeStyle::kNeox, c.shape.head_dim, 1e4};
  options.rerotate_delta = 77;
  CheckUnpack(c, rng, 0, options, stream);
}

TEST(GpuPagedKv, OutOfRangeBlockIdsAreSkipped) {
  REQUIRE_GPU();
  std::mt19937_64 rng(105);
  Stream stream = MustStream();
  PagedCase c;
  c.shape = PagedKvShape{2, 4, 8, 2, 16, DType::kBf16};
  c.table = {4};  // one past the last block
  c.first_token = 1;
  c.num_tokens = 6;
  HostCache poisoned(c.shape, kPoison);
  DeviceCache device(poisoned, 0);
  DeviceBuffer table = MustAllocate(4);
  ASSERT_TRUE(table.CopyFromHost(AsByteSpan(c.table)).ok());
  const size_t bytes = c.shape.ChunkBytes(c.num_tokens);
  DeviceBuffer chunk = MustAllocate(bytes);
  ASSERT_TRUE(chunk.CopyFromHost(testing::RandomBytes(rng, bytes)).ok());
  const SequenceSlice seq = c.SliceWith(reinterpret_cast<const int32_t*>(table.data()));
  ASSERT_TRUE(UnpackPagedKv(device.View(), seq, chunk.span(), {}, stream.get()).ok());
  ASSERT_TRUE(stream.Synchronize().ok());
  EXPECT_TRUE(device.Download() == poisoned);  // nothing written anywhere
  ASSERT_TRUE(chunk.Fill(0xff).ok());
  ASSERT_TRUE(PackPagedKv(device.View(), seq, chunk.span(), stream.get()).ok());
  ASSERT_TRUE(stream.Synchronize().ok());
  Bytes got(bytes);
  ASSERT_TRUE(chunk.CopyToHost(got).ok());
  EXPECT_EQ(got, Bytes(bytes, kPoison));  // the chunk's rows were skipped, not filled from elsewhere
}

TEST(GpuRerotate, EqualsTwin) {
  REQUIRE_GPU();
  std::mt19937_64 rng(106);
  Stream stream = MustStream();
  const int64_t deltas[] = {1, -1, 4097, -100000, 3000000000LL};
  for (DType dtype : kDTypes) {
    for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kGptj}) {
      for (int64_t delta : deltas) {
        const uint32_t head_dim = 2 * testing::Uniform(rng, 4, 128);
        const uint32_t rotary = 2 * testing::Uniform(rng, 1, std::min<uint32_t>(head_dim, kMaxDeviceRotaryDim) / 2);
        const ChunkShape shape{testing::Uniform(rng, 1, 4), testing::Uniform(rng, 1, 64), testing::Uniform(rng, 1, 8),
                               head_dim, dtype};
        const RopeParams rope{style, rotary, delta % 2 ? 1e4 : 1e6};
        SCOPED_TRACE(std::string(DTypeName(dtype)) + " D" + std::to_string(head_dim) + " rotary " +
                     std::to_string(rotary) + " delta " + std::to_string(delta));
        Bytes want = testing::RandomValues(rng, dtype, shape.Bytes());
        DeviceBuffer chunk = MustAllocate(want.size());
        ASSERT_TRUE(chunk.CopyFromHost(want).ok());
        ASSERT_TRUE(RerotateChunkKeys(shape, rope, delta, chunk.span(), stream.get()).ok());
        ASSERT_TRUE(stream.Synchronize().ok());
        ASSERT_TRUE(RerotateChunkKeysCpu(shape, rope, delta, want).ok());
        Bytes got(want.size());
        ASSERT_TRUE(chunk.CopyToHost(got).ok());
        size_t differing = 0;
        for (size_t i = 0; i < got.size(); ++i) differing += got[i] != want[i];
        ASSERT_EQ(differing, 0u) << "bytes differing from the twin (documented bound: 0 ulp on finite values)";
      }
    }
  }
}

}  // namespace
}  // namespace kvtier::gpu
