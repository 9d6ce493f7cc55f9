// NcclChannel's answers that need no second GPU (every build): bad ranks refused, and without CUDA, a GPU or
// libnccl every entry point is UNAVAILABLE with the reason (the caller then uses gRPC).
#include "kvtier/gpu/nccl_channel.h"

#include <gtest/gtest.h>

#include "kvtier/gpu/device.h"

namespace kvtier::gpu {
namespace {

TEST(NcclChannelTest, RankMustBeZeroOrOne) {
  for (int rank : {-1, 2, 7}) {
    auto c = NcclChannel::Connect(NcclUniqueId{}, rank, std::chrono::milliseconds(10));
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(c.status().message(), "NcclChannel: rank must be 0 or 1, not " + std::to_string(rank));
  }
}

TEST(NcclChannelTest, WithoutAGpuEverythingIsUnavailableWithTheReason) {
  if (GpuAvailable()) GTEST_SKIP() << "a GPU is present: nccl_kernel_test covers it";
  auto v = NcclVersion();
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(v.status().message().empty());
  auto id = NcclCreateUniqueId();
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(id.status().message(), v.status().message()) << "one reason for every entry point";
  auto c = NcclChannel::Connect(NcclUniqueId{}, 0, std::chrono::milliseconds(10));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kvtier::gpu
