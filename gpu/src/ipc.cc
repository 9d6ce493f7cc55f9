// CUDA IPC over the runtime API; without CUDA every entry point answers UNAVAILABLE (ipc.h).
#include "kvtier/gpu/ipc.h"

#include <cstring>
#include <string>
#include <utility>

#include "kvtier/gpu/device.h"

#if defined(KVTIER_HAVE_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace kvtier::gpu {
namespace {

Status NoGpu() {
#if defined(KVTIER_HAVE_CUDA)
  return Unavailable("no usable GPU: " + CachedProbe().reason);
#else
  return Unavailable("kvtier was built without CUDA");
#endif
}

#if defined(KVTIER_HAVE_CUDA)
static_assert(sizeof(cudaIpcMemHandle_t) == 64, "an IPC handle travels as 64 bytes");

Status CudaError(const char* what, cudaError_t err) {
  cudaGetLastError();  // clear it, so the next launch check does not report it
  return Internal(std::string(what) + ": " + cudaGetErrorString(err));
}
#endif

}  // namespace

Result<IpcExport> ExportIpc(const void* base, int device) {
  if (base == nullptr) return InvalidArgument("ExportIpc: the block is null");
  if (!GpuAvailable()) return NoGpu();
#if defined(KVTIER_HAVE_CUDA)
  cudaIpcMemHandle_t handle;
  if (cudaError_t err = cudaIpcGetMemHandle(&handle, const_cast<void*>(base)); err != cudaSuccess) {
    return CudaError("cudaIpcGetMemHandle", err);
  }
  char bus[32] = {};
  if (cudaError_t err = cudaDeviceGetPCIBusId(bus, sizeof(bus), device); err != cudaSuccess) {
    return CudaError("cudaDeviceGetPCIBusId", err);
  }
  return IpcExport{std::string(reinterpret_cast<const char*>(&handle), sizeof(handle)), bus};
#else
  static_cast<void>(device);
  return NoGpu();
#endif
}

Result<IpcMapping> IpcMapping::Open(const IpcExport& exported, size_t bytes) {
  if (exported.handle.size() != 64) {
    return InvalidArgument("an IPC handle has 64 bytes, not " + std::to_string(exported.handle.size()));
  }
  if (!GpuAvailable()) return NoGpu();
#if defined(KVTIER_HAVE_CUDA)
  cudaIpcMemHandle_t handle;
  std::memcpy(&handle, exported.handle.data(), sizeof(handle));
  void* data = nullptr;
  if (cudaError_t err = cudaIpcOpenMemHandle(&data, handle, cudaIpcMemLazyEnablePeerAccess); err != cudaSuccess) {
    return CudaError(("cudaIpcOpenMemHandle (memory on " + exported.pci_bus_id + ")").c_str(), err);
  }
  return IpcMapping(static_cast<const std::byte*>(data), bytes);
#else
  static_cast<void>(bytes);
  return NoGpu();
#endif
}

IpcMapping::IpcMapping(IpcMapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

IpcMapping& IpcMapping::operator=(IpcMapping&& other) noexcept {
  if (this != &other) {
    IpcMapping gone(std::move(*this));
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

IpcMapping::~IpcMapping() {
#if defined(KVTIER_HAVE_CUDA)
  if (data_ != nullptr && cudaIpcCloseMemHandle(const_cast<std::byte*>(data_)) != cudaSuccess) cudaGetLastError();
#endif
}

}  // namespace kvtier::gpu
