// The device entry point of cachegen_decode.h over the CUDA runtime: the twin's checks for every chunk, then
// one launch per kCachegenLaunchChunks chunks.
#include <algorithm>
#include <string>

#include "cachegen_host.h"
#include "cuda_kernels.h"
#include "kvtier/gpu/cachegen_decode.h"
#include "kvtier/gpu/device.h"

namespace kvtier::gpu {
namespace {

// Chunk c's view over its device buffers: records (and tables, unless kept apart) from the image, codes and
// anchors in the workspace.
detail::CachegenChunkView DeviceView(const CachegenDeviceChunk& c) {
  const CachegenPlan& plan = *c.plan;
  std::byte* workspace = c.workspace.data();
  const std::byte* image = c.image.data();
  const std::byte* tables = c.tables.empty() ? image + CachegenTablesOffset(plan) : c.tables.data();
  detail::CachegenChunkView v =
      detail::CachegenView(plan, c.out_dtype, c.body.data(), reinterpret_cast<const CachegenStream*>(image),
                           reinterpret_cast<const CachegenTable*>(tables), c.out.data());
  v.errors = reinterpret_cast<uint32_t*>(workspace);
  v.anchors = reinterpret_cast<float*>(workspace + detail::CachegenAnchorsOffset(plan));
  return v;
}

}  // namespace

Status DecodeCachegen(std::span<const CachegenDeviceChunk> chunks, StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(CheckCachegenDeviceChunks(chunks));
  if (!GpuAvailable()) return Unavailable("no usable GPU: " + CachedProbe().reason);
  for (size_t first = 0; first < chunks.size(); first += detail::kCachegenLaunchChunks) {
    detail::CachegenLaunchParams p{};
    p.num_chunks = static_cast<uint32_t>(std::min<size_t>(detail::kCachegenLaunchChunks, chunks.size() - first));
    for (uint32_t k = 0; k < p.num_chunks; ++k) {
      p.chunks[k] = DeviceView(chunks[first + k]);
      p.first_stream[k + 1] = p.first_stream[k] + p.chunks[k].num_streams;
    }
    const std::string error = detail::LaunchCachegenDecode(p, stream);
    if (!error.empty()) return Internal(error);
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu
