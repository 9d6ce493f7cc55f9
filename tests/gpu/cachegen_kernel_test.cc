// The cachegen decode kernel against its CPU twin (label "gpu"): random chunks of every level, anchor-delta
// setting, table placement, tokens per stream and dtype, into every output dtype, outputs poisoned with 0xFF
// before each run and every byte compared; bodies at odd device offsets; a batch of more chunks than one
// launch takes; streams damaged past the parse reported with the twin's status; a device record pointing
// outside the chunk refused without touching memory outside it; tables kept apart from the image. Without a
// GPU every test skips and says why.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "cachegen_cases.h"
#include "container.h"
#include "device_test_util.h"
#include "gpu_test_common.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {
namespace {

using testing::CachegenCase;
using testing::DataBytes;

using testing::kDTypes;

using testing::MustAllocate;

// One chunk's device buffers: body (at `body_offset` into its allocation), image, workspace, output.
struct DeviceChunk {
  DeviceBuffer body, image, workspace, out;
  size_t body_offset = 0;

  DeviceChunk(const CachegenPlan& plan, DType out_dtype, size_t offset)
      : body(MustAllocate(plan.body.size() + offset)),
        image(MustAllocate(CachegenImageBytes(plan))),
        workspace(MustAllocate(CachegenWorkspaceBytes(plan))),
        out(MustAllocate(CachegenOutputBytes(plan, out_dtype))),
        body_offset(offset) {
    EXPECT_TRUE(body.CopyFromHost(plan.body, offset).ok());
    EXPECT_TRUE(image.CopyFromHost(CachegenImage(plan)).ok());
    EXPECT_TRUE(out.Fill(0xff).ok());
  }
  CachegenDeviceChunk View(const CachegenPlan& plan, DType out_dtype) const {
    return CachegenDeviceChunk{&plan, std::span<const std::byte>(body.data() + body_offset, plan.body.size()),
                               image.span(), workspace.span(), out.span(), out_dtype, {}};
  }
  Status DecodeStatus(const CachegenPlan& plan) const {
    DataBytes codes(CachegenErrorBytes(plan));
    const Status copy = workspace.CopyToHost(codes);
    return copy.ok() ? CachegenDeviceStatus(plan, codes) : copy;
  }
  DataBytes Output() const {
    DataBytes bytes(out.size());
    EXPECT_TRUE(out.CopyToHost(bytes).ok());
    return bytes;
  }
};

DataBytes TwinOutput(const CachegenPlan& plan, DType out_dtype) {
  DataBytes want(CachegenOutputBytes(plan, out_dtype), std::byte{0xff});
  EXPECT_TRUE(DecodeCachegenCpu(plan, out_dtype, want).ok());
  return want;
}

TEST(CachegenDecodeKernel, EqualsTheTwinForEveryOutputDType) {
  REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  std::mt19937_64 rng(111);
  for (int i = 0; i < 36; ++i) {
    const CachegenCase c = testing::MakeCachegenCase(rng, kDTypes[i % 3], 1 + (i / 3) % 3, (i / 9) % 2 == 1,
                                                     (i / 18) % 2 == 1);
    ASSERT_FALSE(c.encoded.empty());
    Result<CachegenPlan> plan = ParseCachegenContainer(c.encoded, c.Resolver());
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    for (DType out_dtype : kDTypes) {
      SCOPED_TRACE(c.Describe() + " -> " + std::string(DTypeName(out_dtype)));
      const DeviceChunk device(*plan, out_dtype, i % 4);  // bodies off alignment: bytes are read one by one
      const CachegenDeviceChunk chunk = device.View(*plan, out_dtype);
      const Status st = DecodeCachegen(std::span(&chunk, 1), stream->get());
      ASSERT_TRUE(st.ok()) << st.ToString();
      ASSERT_TRUE(stream->Synchronize().ok());
      ASSERT_TRUE(device.DecodeStatus(*plan).ok());
      ASSERT_EQ(device.Output(), TwinOutput(*plan, out_dtype));
    }
  }
}

// One device copy of a profile's tables serves every chunk coded with it (CachegenDeviceChunk::tables).
TEST(CachegenDecodeKernel, TablesKeptApartGiveTheSameOutput) {
  REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  std::mt19937_64 rng(115);
  for (int i = 0; i < 12; ++i) {
    const CachegenCase c = testing::MakeCachegenCase(rng, kDTypes[i % 3], 1 + i % 3, i % 2 == 1, i % 4 < 2);
    Result<CachegenPlan> plan = ParseCachegenContainer(c.encoded, c.Resolver());
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    SCOPED_TRACE(c.Describe());
    const DType out_dtype = plan->shape.dtype;
    DeviceChunk device(*plan, out_dtype, 0);
    const DataBytes image = CachegenImage(*plan);
    const uint64_t records = CachegenTablesOffset(*plan);
    DeviceBuffer tables = MustAllocate(image.size() - records);
    ASSERT_TRUE(tables.CopyFromHost(std::span(image).subspan(records)).ok());
    ASSERT_TRUE(device.image.Fill(0xff).ok());  // the image's own tables are garbage now: never read
    ASSERT_TRUE(device.image.CopyFromHost(std::span(image).first(records)).ok());
    CachegenDeviceChunk chunk = device.View(*plan, out_dtype);
    chunk.image = chunk.image.first(records);
    chunk.tables = tables.span();
    ASSERT_TRUE(DecodeCachegen(std::span(&chunk, 1), stream->get()).ok());
    ASSERT_TRUE(stream->Synchronize().ok());
    ASSERT_TRUE(device.DecodeStatus(*plan).ok());
    ASSERT_EQ(device.Output(), TwinOutput(*plan, out_dtype));
  }
}

TEST(CachegenDecodeKernel, ABatchLargerThanOneLaunch) {
  REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  std::mt19937_64 rng(112);
  std::vector<CachegenCase> cases;
  std::vector<CachegenPlan> plans;
  for (int i = 0; i < 40; ++i) {
    cases.push_back(testing::RandomCachegenCase(rng));
    Result<CachegenPlan> plan = ParseCachegenContainer(cases.back().encoded, cases.back().Resolver());
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    plans.push_back(std::move(plan).value());
  }
  std::vector<DeviceChunk> device;
  std::vector<CachegenDeviceChunk> chunks;
  device.reserve(plans.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    const DType out_dtype = kDTypes[i % 3];
    device.emplace_back(plans[i], out_dtype, i % 3);
    chunks.push_back(device.back().View(plans[i], out_dtype));
  }
  const Status st = DecodeCachegen(chunks, stream->get());
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(stream->Synchronize().ok());
  for (size_t i = 0; i < plans.size(); ++i) {
    SCOPED_TRACE(cases[i].Describe());
    ASSERT_TRUE(device[i].DecodeStatus(plans[i]).ok());
    ASSERT_EQ(device[i].Output(), TwinOutput(plans[i], chunks[i].out_dtype));
  }
}

// Words damaged with the checksums recomputed: the parse accepts the chunk, decoding does not.
TEST(CachegenDecodeKernel, ReportsAStreamOnlyDecodingFindsBad) {
  REQUIRE_GPU();
  std::mt19937_64 rng(113);
  int refused = 0;
  for (int i = 0; i < 40; ++i) {
    CachegenCase c = testing::RandomCachegenCase(rng);
    DataBytes bad = c.encoded;
    bad[bad.size() - 1 - rng() % 64] ^= std::byte(1u << (rng() % 8));  // in the last streams' words
    codec::internal::RecomputeChecksums(bad);
    Result<CachegenPlan> plan = ParseCachegenContainer(bad, c.Resolver());
    if (!plan.ok()) continue;  // the damage hit scales or states: the parse's business
    SCOPED_TRACE(c.Describe());
    DataBytes twin_out(CachegenOutputBytes(*plan, plan->shape.dtype));
    const Status want = DecodeCachegenCpu(*plan, plan->shape.dtype, twin_out);
    const DeviceChunk device(*plan, plan->shape.dtype, 0);
    const CachegenDeviceChunk chunk = device.View(*plan, plan->shape.dtype);
    ASSERT_TRUE(DecodeCachegen(std::span(&chunk, 1)).ok());
    const Status got = device.DecodeStatus(*plan);  // DeviceBuffer copies block until the default stream is done
    EXPECT_EQ(got.code(), want.code()) << got.ToString() << " vs " << want.ToString();
    EXPECT_EQ(got.message(), want.message());
    if (want.ok()) {
      EXPECT_EQ(device.Output(), twin_out);
    }
    refused += want.ok() ? 0 : 1;
  }
  EXPECT_GT(refused, 0);
}

TEST(CachegenDecodeKernel, ARecordOutsideTheChunkIsRefusedOnTheDevice) {
  REQUIRE_GPU();
  std::mt19937_64 rng(114);
  const CachegenCase c = testing::MakeCachegenCase(rng, DType::kFp16, 2, false, false);
  Result<CachegenPlan> plan = ParseCachegenContainer(c.encoded);
  ASSERT_TRUE(plan.ok());
  DeviceChunk device(*plan, DType::kFp16, 0);
  CachegenStream outside = plan->streams[0];
  outside.offset = uint64_t{1} << 40;
  ASSERT_TRUE(device.image.CopyFromHost(std::as_bytes(std::span(&outside, 1))).ok());
  const CachegenDeviceChunk chunk = device.View(*plan, DType::kFp16);
  ASSERT_TRUE(DecodeCachegen(std::span(&chunk, 1)).ok());
  const Status st = device.DecodeStatus(*plan);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "cachegen stream " + std::to_string(plan->streams[0].index) +
                              ": the device image's record does not fit the chunk");
  // The other streams decoded as usual; stream 0's rows stay poisoned.
  const DataBytes got = device.Output();
  DataBytes want = TwinOutput(*plan, DType::kFp16);
  const size_t rows_bytes = size_t{plan->streams[0].num_tokens} * plan->shape.num_kv_heads * plan->shape.head_dim * 2;
  std::fill(want.begin(), want.begin() + static_cast<ptrdiff_t>(rows_bytes), std::byte{0xff});
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace kvtier::gpu
