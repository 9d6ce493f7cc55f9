// Built when CUDA is off: the GPU entry points report that no GPU is available.
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/iota.h"

namespace kvtier::gpu {

GpuProbe ProbeDevices() { return GpuProbe{false, {}, "built without CUDA (KVTIER_WITH_CUDA=OFF or no nvcc)"}; }

Status IotaOnDevice(std::span<uint32_t>, uint32_t, uint32_t) {
  return Unavailable("kvtier was built without CUDA");
}

}  // namespace kvtier::gpu
