#include <cuda_runtime_api.h>

#include "kvtier/gpu/device.h"

namespace kvtier::gpu {

GpuProbe ProbeDevices() {
  GpuProbe probe;
  probe.built_with_cuda = true;
  int count = 0;
  // The runtime loads the driver library itself; without a driver or GPU this returns an error.
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    probe.reason = std::string("CUDA unavailable: ") + cudaGetErrorString(err);
    return probe;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    probe.devices.push_back(
        {i, prop.name, prop.totalGlobalMem, prop.major, prop.minor, prop.hostRegisterReadOnlySupported != 0});
  }
  if (probe.devices.empty()) probe.reason = "no CUDA device found";
  return probe;
}

}  // namespace kvtier::gpu

#include "cuda_kernels.h"
#include "kvtier/gpu/iota.h"

namespace kvtier::gpu {

Status IotaOnDevice(std::span<uint32_t> out, uint32_t start, uint32_t step) {
  if (ProbeDevices().devices.empty()) return Unavailable("no usable GPU");
  if (out.empty()) return Status::Ok();
  const std::string error = detail::IotaViaDevice(out.data(), out.size(), start, step);
  if (!error.empty()) return Unavailable(error);
  return Status::Ok();
}

}  // namespace kvtier::gpu
