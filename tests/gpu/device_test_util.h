// What every kernel test needs: a skip that says why when there is no GPU, device buffers whose allocation
// failure fails the test, and byte views of host vectors to copy from.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"

#define REQUIRE_GPU()                    \
  if (!::kvtier::gpu::GpuAvailable()) \
  GTEST_SKIP() << "no GPU: " << ::kvtier::gpu::CachedProbe().reason

namespace kvtier::gpu::testing {

inline DeviceBuffer MustAllocate(size_t bytes) {
  Result<DeviceBuffer> b = DeviceBuffer::Allocate(bytes);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return std::move(b).value();
}

template <typename T>
std::span<const std::byte> AsByteSpan(const std::vector<T>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T)};
}

}  // namespace kvtier::gpu::testing
