// The GPU runtime under the CPU emulation of kvtier's gpu/ library: one emulated device whose memory is host memory.
// It stands in for the CUDA runtime calls of gpu/src (include/cuda_runtime_api.h), for the RAII types of
// gpu/src/runtime_cuda.cc (streams and events in emulated_streams.cc, device memory, host registration and CUDA IPC
// in emulated_memory.cc), the probe of device_cuda.cc and the iota of iota.cu. Kernels and copies are queued on
// their streams and run as late as CUDA allows (emulated_streams.h), so besides the kernels' own code (indexing,
// vector widths, bounds under the sanitizers, against the twins) it checks that the host waits for the device's work
// before it reads the results or reuses the inputs. Device math, real concurrency and the driver are not emulated:
// the `gpu` label must still run on a GPU (scripts/gpu-check.sh, scripts/gpu-bundle.sh).
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "emulated_kernel.h"
#include "emulated_memory.h"
#include "emulated_streams.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/iota.h"

dim3 blockIdx, threadIdx, gridDim, blockDim;

namespace {

thread_local cudaError_t last_error = cudaSuccess;  // per thread, as the runtime's

}  // namespace

namespace emu {

void CheckLaunch(dim3 grid, dim3 block) {
  const unsigned threads = block.x * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 ||
      threads == 0 || threads > 1024) {
    std::fprintf(stderr, "emulated launch a GPU refuses: grid (%u, %u, %u), block (%u, %u, %u)\n", grid.x, grid.y,
                 grid.z, block.x, block.y, block.z);
    std::abort();
  }
}

}  // namespace emu

cudaError_t emu::RecordError(cudaError_t error) { return last_error = error; }

cudaError_t cudaGetLastError() { return std::exchange(last_error, cudaSuccess); }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorHostMemoryAlreadyRegistered: return "part or all of the range was already registered";
    case cudaErrorNotSupported: return "operation not supported (IPC is emulated only with KVTIER_EMULATE_CUDA_IPC)";
    case cudaErrorInvalidContext: return "invalid device context (a process cannot open its own IPC handle)";
    case cudaErrorMapBufferObjectFailed: return "mapping of the IPC handle's memory failed";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "invalid argument";
  }
}

// Queued, with CUDA's exceptions for pageable host memory: a source is staged at the call (the caller may reuse
// it when the call returns), and a copy into one is complete when the call returns.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  auto lock = emu::LockDevice();
  if (emu::PageableLocked(src)) {
    auto staged = std::make_shared<std::vector<std::byte>>(static_cast<const std::byte*>(src),
                                                           static_cast<const std::byte*>(src) + bytes);
    emu::EnqueueLocked(stream, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  } else {
    emu::EnqueueLocked(stream, [dst, src, bytes] { std::memmove(dst, src, bytes); });
  }
  if (emu::PageableLocked(dst)) emu::SynchronizeLocked(stream);
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : (last_error = cudaErrorInvalidDevice); }
cudaError_t cudaDeviceGetPCIBusId(char* bus_id, int length, int) {
  std::snprintf(bus_id, static_cast<size_t>(length), "0000:00:00.0");
  return cudaSuccess;
}

namespace kvtier::gpu {

Status IotaOnDevice(std::span<uint32_t> out, uint32_t start, uint32_t step) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = start + static_cast<uint32_t>(i) * step;
  return Status::Ok();
}

GpuProbe ProbeDevices() {
  GpuProbe probe;
  probe.built_with_cuda = true;
  probe.devices.push_back({0, "emulated GPU (CPU)", 1ull << 34, 9, 0, true});
  return probe;
}

// Fresh memory holds a pattern, as cudaMalloc's holds whatever was there: tests must write before they read.
Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  if (bytes == 0) return DeviceBuffer(nullptr, 0);
  auto lock = emu::LockDevice();
  void* p = emu::AllocateLocked(bytes);
  if (p == nullptr) return ResourceExhausted("emulated device memory: no room");
  return DeviceBuffer(static_cast<std::byte*>(p), bytes);
}

namespace {

// cudaFree waits for the device first: queued work may still use the buffer.
void FreeDeviceMemory(std::byte* data) {
  if (data == nullptr) return;
  auto lock = emu::LockDevice();
  emu::SynchronizeDeviceLocked();
  emu::FreeLocked(data);
}

}  // namespace

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    FreeDeviceMemory(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}
DeviceBuffer::~DeviceBuffer() { FreeDeviceMemory(data_); }

// cudaMemcpy and cudaMemset on the legacy default stream: after its own work, not after the work of the
// non-blocking streams gpu/ creates, which the caller must have waited for.
Status DeviceBuffer::CopyFromHost(std::span<const std::byte> src, size_t offset) {
  if (offset > size_ || src.size() > size_ - offset) return InvalidArgument("copy past the device buffer's end");
  auto lock = emu::LockDevice();
  emu::SynchronizeLocked(nullptr);
  if (!src.empty()) std::memcpy(data_ + offset, src.data(), src.size());
  return Status::Ok();
}
Status DeviceBuffer::CopyToHost(std::span<std::byte> dst, size_t offset) const {
  if (offset > size_ || dst.size() > size_ - offset) return InvalidArgument("copy past the device buffer's end");
  auto lock = emu::LockDevice();
  emu::SynchronizeLocked(nullptr);
  if (!dst.empty()) std::memcpy(dst.data(), data_ + offset, dst.size());
  return Status::Ok();
}
Status DeviceBuffer::Fill(uint8_t value) {
  auto lock = emu::LockDevice();
  emu::SynchronizeLocked(nullptr);
  if (size_ != 0) std::memset(data_, value, size_);
  return Status::Ok();
}

}  // namespace kvtier::gpu
