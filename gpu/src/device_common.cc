#include "kvtier/gpu/device.h"

namespace kvtier::gpu {

const GpuProbe& CachedProbe() {
  static const GpuProbe probe = ProbeDevices();
  return probe;
}

bool GpuAvailable() { return !CachedProbe().devices.empty(); }

}  // namespace kvtier::gpu
