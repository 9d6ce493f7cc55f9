// Device discovery, streams, events and device buffers: with a GPU they work; without one (or without
// CUDA) they say UNAVAILABLE instead of failing some other way. Runs everywhere.
#include <gtest/gtest.h>

#include <vector>

#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/ipc.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {
namespace {

TEST(GpuRuntime, ProbeIsCachedAndExplainsAnEmptyAnswer) {
  const GpuProbe& probe = CachedProbe();
  EXPECT_EQ(&probe, &CachedProbe());
  EXPECT_EQ(GpuAvailable(), !probe.devices.empty());
#ifdef KVTIER_HAVE_CUDA
  EXPECT_TRUE(probe.built_with_cuda);
#else
  EXPECT_FALSE(probe.built_with_cuda);
#endif
  if (probe.devices.empty()) {
    EXPECT_FALSE(probe.reason.empty());
  }
}

TEST(GpuRuntime, WithoutAGpuNothingCanBeCreated) {
  if (GpuAvailable()) GTEST_SKIP() << "a GPU is present";
  EXPECT_EQ(Stream::Create().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(Event::Create().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(DeviceBuffer::Allocate(16).status().code(), StatusCode::kUnavailable);
}

TEST(GpuRuntime, IpcArgumentsAreCheckedAndWithoutAGpuItIsUnavailable) {
  const Result<IpcExport> null_block = ExportIpc(nullptr, 0);
  ASSERT_FALSE(null_block.ok());
  EXPECT_EQ(null_block.status().code(), StatusCode::kInvalidArgument);
  const Result<IpcMapping> short_handle = IpcMapping::Open(IpcExport{"0123456789", "0000:00:00.0"}, 1 << 20);
  ASSERT_FALSE(short_handle.ok());
  EXPECT_EQ(short_handle.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(short_handle.status().message(), "an IPC handle has 64 bytes, not 10");
  if (GpuAvailable()) return;
  int block = 0;
  EXPECT_EQ(ExportIpc(&block, 0).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(IpcMapping::Open(IpcExport{std::string(64, 'x'), ""}, 1 << 20).status().code(), StatusCode::kUnavailable);
}

TEST(GpuRuntime, StreamEventAndBufferWork) {
  if (!GpuAvailable()) GTEST_SKIP() << "no GPU: " << CachedProbe().reason;
  Result<Stream> stream = Stream::Create();
  ASSERT_TRUE(stream.ok()) << stream.status().ToString();
  Result<Event> start = Event::Create(true), end = Event::Create(true);
  ASSERT_TRUE(start.ok() && end.ok());
  ASSERT_TRUE(start->Record(stream->get()).ok());
  Result<DeviceBuffer> buffer = DeviceBuffer::Allocate(1000);
  ASSERT_TRUE(buffer.ok()) << buffer.status().ToString();
  ASSERT_TRUE(buffer->Fill(0xab).ok());
  std::vector<std::byte> host(1000);
  ASSERT_TRUE(buffer->CopyToHost(host).ok());
  for (std::byte b : host) ASSERT_EQ(b, std::byte{0xab});
  std::vector<std::byte> part(10, std::byte{1});
  ASSERT_TRUE(buffer->CopyFromHost(part, 990).ok());
  EXPECT_EQ(buffer->CopyFromHost(part, 991).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(end->Record(stream->get()).ok());
  ASSERT_TRUE(end->Synchronize().ok());
  Result<bool> done = end->Query();
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(*done);
  EXPECT_TRUE(Event::ElapsedMs(*start, *end).ok());
  ASSERT_TRUE(end->MakeStreamWait(stream->get()).ok());
  EXPECT_TRUE(stream->Synchronize().ok());
  Stream moved = std::move(stream).value();
  EXPECT_NE(moved.get(), nullptr);
}

}  // namespace
}  // namespace kvtier::gpu
