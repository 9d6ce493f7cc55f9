// The device entry point of cachegen_decode.h over the CUDA runtime: the twin's checks for every chunk, then
// one launch per kCachegenLaunchChunks chunks.
#include <algorithm>
#include <string>

#include "cachegen_host.h"
#include "cuda_kernels.h"
#include "kvtier/gpu/cachegen_decode.h"
#include "kvtier/gpu/device.h"

namespace kvtier::gpu {

Status DecodeCachegen(std::span<const CachegenDeviceChunk> chunks, StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(CheckCachegenDeviceChunks(chunks));
  if (!GpuAvailable()) return Unavailable("no usable GPU: " + CachedProbe().reason);
  for (size_t first = 0; first < chunks.size(); first += detail::kCachegenLaunchChunks) {
    detail::CachegenLaunchParams p{};
    p.num_chunks = static_cast<uint32_t>(std::min<size_t>(detail::kCachegenLaunchChunks, chunks.size() - first));
    for (uint32_t k = 0; k < p.num_chunks; ++k) {
      p.chunks[k] = detail::DeviceChunkView(chunks[first + k]);
      p.first_stream[k + 1] = p.first_stream[k] + p.chunks[k].num_streams;
    }
    const std::string error = detail::LaunchCachegenDecode(p, stream);
    if (!error.empty()) return Internal(error);
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu
