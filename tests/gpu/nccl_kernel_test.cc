// NcclChannel on real GPUs (label gpu). With one GPU: a channel whose peer never joins gives up after its
// timeout instead of hanging. With two: rank 0 on device 0 sends random chunk-sized buffers to rank 1 on device
// 1 (one thread per rank, as two workers would), which receives them into poisoned memory; every byte compared.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/nccl_channel.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {
namespace {

void SkipWithoutNccl() {
  if (!GpuAvailable()) GTEST_SKIP() << "no GPU: " << CachedProbe().reason;
  auto v = NcclVersion();
  if (!v.ok()) GTEST_SKIP() << "no NCCL: " << v.status().ToString();
}

TEST(NcclKernelTest, AMissingPeerTimesOut) {
  SkipWithoutNccl();
  if (IsSkipped()) return;
  auto id = NcclCreateUniqueId();
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto c = NcclChannel::Connect(*id, 0, std::chrono::milliseconds(300));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(c.status().message(), "NcclChannel: the peer did not join within 300 ms");
}

TEST(NcclKernelTest, TwoRanksOnTwoGpusMoveEveryByte) {
  SkipWithoutNccl();
  if (IsSkipped()) return;
  if (CachedProbe().devices.size() < 2) {
    GTEST_SKIP() << "NCCL puts each rank on its own GPU; this machine has " << CachedProbe().devices.size();
  }
  auto id = NcclCreateUniqueId();
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  constexpr size_t kBytes = (32u << 20) + 6;  // a 32 MiB chunk, and an odd tail
  std::vector<std::byte> sent(kBytes), received(kBytes);
  std::mt19937_64 rng(5);
  for (auto& b : sent) b = static_cast<std::byte>(rng());
  Status results[2];
  auto rank = [&](int r) {
    results[r] = [&]() -> Status {
      if (cudaSetDevice(r) != cudaSuccess) return Internal("cudaSetDevice");
      auto channel = NcclChannel::Connect(*id, r, std::chrono::seconds(60));
      if (!channel.ok()) return channel.status();
      auto stream = Stream::Create();
      if (!stream.ok()) return stream.status();
      auto buf = DeviceBuffer::Allocate(kBytes);
      if (!buf.ok()) return buf.status();
      if (r == 0) {
        KVTIER_RETURN_IF_ERROR(buf->CopyFromHost(sent));
        KVTIER_RETURN_IF_ERROR(channel->Send(buf->data(), kBytes, stream->get()));
      } else {
        KVTIER_RETURN_IF_ERROR(buf->Fill(0xFF));
        KVTIER_RETURN_IF_ERROR(channel->Recv(buf->data(), kBytes, stream->get()));
      }
      KVTIER_RETURN_IF_ERROR(stream->Synchronize());
      if (r == 1) KVTIER_RETURN_IF_ERROR(buf->CopyToHost(received));
      return Status::Ok();
    }();
  };
  std::thread t0(rank, 0), t1(rank, 1);
  t0.join();
  t1.join();
  ASSERT_TRUE(results[0].ok()) << results[0].ToString();
  ASSERT_TRUE(results[1].ok()) << results[1].ToString();
  EXPECT_EQ(sent, received);
}

}  // namespace
}  // namespace kvtier::gpu
