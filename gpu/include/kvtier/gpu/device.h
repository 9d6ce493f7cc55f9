// GPU discovery. kvtier runs with or without CUDA: a build without CUDA, a machine without a GPU or
// driver, or any CUDA error at probe time all mean "no GPU tier", never a failure to start.
// Thread-safe; CachedProbe() probes once per process (the first call) and remembers the answer.
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
  // cudaHostRegister can map host memory read-only for it (cudaDevAttrHostRegisterReadOnlySupported): what
  // PagedKvTransfer needs to DMA straight out of a server's shared arena, which workers map read-only.
  bool host_register_read_only = false;
};

struct GpuProbe {
  bool built_with_cuda = false;
  std::vector<DeviceInfo> devices;  // empty: no GPU tier
  std::string reason;               // why there are no devices, for the start-up log
};

GpuProbe ProbeDevices();

// The result of the first ProbeDevices() of the process; the device entry points consult it.
const GpuProbe& CachedProbe();
// True when CachedProbe() found at least one device.
bool GpuAvailable();

}  // namespace kvtier::gpu
