#include <gtest/gtest.h>

#include <vector>

#include "kvtier/gpu/device.h"
#include "kvtier/gpu/iota.h"

namespace kvtier::gpu {
namespace {

TEST(IotaTest, HostTwinWrapsLikeUint32) {
  std::vector<uint32_t> out(5);
  IotaHost(out, 0xfffffffeu, 1);
  EXPECT_EQ(out, (std::vector<uint32_t>{0xfffffffeu, 0xffffffffu, 0, 1, 2}));
}

TEST(IotaTest, DeviceMatchesHostTwin) {
  const GpuProbe probe = ProbeDevices();
  if (probe.devices.empty()) {
    // No GPU here: the device entry point must say so instead of failing in some other way.
    std::vector<uint32_t> out(4);
    EXPECT_EQ(IotaOnDevice(out, 0, 1).code(), StatusCode::kUnavailable);
    GTEST_SKIP() << "no GPU: " << probe.reason;
  }
  std::vector<uint32_t> device(1 << 20), host(1 << 20);
  ASSERT_TRUE(IotaOnDevice(device, 12345, 7).ok());
  IotaHost(host, 12345, 7);
  EXPECT_EQ(device, host);
}

}  // namespace
}  // namespace kvtier::gpu
