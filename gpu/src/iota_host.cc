#include "kvtier/gpu/iota.h"

namespace kvtier::gpu {

void IotaHost(std::span<uint32_t> out, uint32_t start, uint32_t step) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = start + static_cast<uint32_t>(i) * step;
}

}  // namespace kvtier::gpu
