// GPU discovery. kvtier runs with or without CUDA: a build without CUDA, a machine without a GPU or
// driver, or any CUDA error at probe time all mean "no GPU tier", never a failure to start.
// Stateless and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvtier::gpu {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  uint64_t total_memory_bytes = 0;
  int compute_major = 0;
  int compute_minor = 0;
};

struct GpuProbe {
  bool built_with_cuda = false;
  std::vector<DeviceInfo> devices;  // empty: no GPU tier
  std::string reason;               // why there are no devices, for the start-up log
};

GpuProbe ProbeDevices();

}  // namespace kvtier::gpu
