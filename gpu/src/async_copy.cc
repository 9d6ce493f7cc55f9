// CopyAsync over the CUDA runtime, or UNAVAILABLE in a build without CUDA.
#include "kvtier/gpu/async_copy.h"

#include <string>

#include "kvtier/gpu/device.h"

#if defined(KVTIER_HAVE_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace kvtier::gpu {
namespace {

Status RequireGpu() {
  if (!GpuAvailable()) return Unavailable("no usable GPU: " + CachedProbe().reason);
  return Status::Ok();
}

}  // namespace

Status CopyAsync(void* dst, const void* src, size_t bytes, StreamHandle stream) {
  if (bytes == 0) return Status::Ok();
  if (dst == nullptr || src == nullptr) return InvalidArgument("CopyAsync: null pointer for a copy of " +
                                                               std::to_string(bytes) + " bytes");
  KVTIER_RETURN_IF_ERROR(RequireGpu());
#if defined(KVTIER_HAVE_CUDA)
  const cudaError_t err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it, so the next kernel launch check does not report this copy's error
    return Internal(std::string("cudaMemcpyAsync: ") + cudaGetErrorString(err));
  }
  return Status::Ok();
#else
  (void)stream;
  return Unavailable("built without CUDA");
#endif
}

Status SynchronizeStream(StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(RequireGpu());
#if defined(KVTIER_HAVE_CUDA)
  const cudaError_t err = cudaStreamSynchronize(stream);
  if (err != cudaSuccess) return Internal(std::string("cudaStreamSynchronize: ") + cudaGetErrorString(err));
  return Status::Ok();
#else
  (void)stream;
  return Unavailable("built without CUDA");
#endif
}

}  // namespace kvtier::gpu
