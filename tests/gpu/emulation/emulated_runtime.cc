// The GPU runtime under the CPU emulation of kvtier's gpu/ library: one emulated device whose memory is host
// memory. It stands in for the CUDA runtime calls of gpu/src (include/cuda_runtime_api.h), for the RAII types
// of gpu/src/runtime_cuda.cc, the probe of device_cuda.cc and the iota of iota.cu. Kernels run at launch (the
// stream and events have nothing to order), so what it checks is the kernels' own code: indexing, vector widths,
// bounds (under the sanitizers), against the twins. Device math, streams, events and the driver are not emulated:
// the `gpu` label must still run on a GPU (scripts/gpu-check.sh, scripts/gpu-bundle.sh).
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>

#include "emulated_kernel.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/iota.h"
#include "kvtier/gpu/stream.h"

dim3 blockIdx, threadIdx, gridDim, blockDim;

namespace {

cudaError_t last_error = cudaSuccess;
std::map<uintptr_t, size_t> registered;  // host ranges by start: a second registration of a page is refused

uintptr_t PageDown(uintptr_t p) { return p & ~uintptr_t{4095}; }
uintptr_t PageUp(uintptr_t p) { return PageDown(p + 4095); }

// Any non-null handle: there is nothing to order.
int handle_tag;

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

cudaError_t cudaGetLastError() { return std::exchange(last_error, cudaSuccess); }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorHostMemoryAlreadyRegistered: return "part or all of the range was already registered";
    case cudaErrorNotSupported: return "operation not supported (not emulated)";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "invalid argument";
  }
}

cudaError_t cudaHostRegister(void* ptr, size_t bytes, unsigned flags) {
  if ((flags & cudaHostRegisterMapped) == 0 || ptr == nullptr || bytes == 0) return last_error = cudaErrorInvalidValue;
  const uintptr_t begin = PageDown(reinterpret_cast<uintptr_t>(ptr));
  const uintptr_t end = PageUp(reinterpret_cast<uintptr_t>(ptr) + bytes);
  for (const auto& [start, length] : registered) {
    if (begin < PageUp(start + length) && PageDown(start) < end) return last_error = cudaErrorHostMemoryAlreadyRegistered;
  }
  registered[reinterpret_cast<uintptr_t>(ptr)] = bytes;
  return cudaSuccess;
}

cudaError_t cudaHostUnregister(void* ptr) {
  return registered.erase(reinterpret_cast<uintptr_t>(ptr)) != 0 ? cudaSuccess : (last_error = cudaErrorInvalidValue);
}

cudaError_t cudaHostGetDevicePointer(void** device, void* host, unsigned /*flags*/) {
  *device = host;  // unified addressing: the device reads the host pointer
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  if (bytes != 0) std::memmove(dst, src, bytes);  // at once: streams have nothing to order here
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : (last_error = cudaErrorInvalidDevice); }
cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t*, void*) { return last_error = cudaErrorNotSupported; }
cudaError_t cudaIpcOpenMemHandle(void**, cudaIpcMemHandle_t, unsigned) { return last_error = cudaErrorNotSupported; }
cudaError_t cudaIpcCloseMemHandle(void*) { return cudaSuccess; }
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

Result<Stream> Stream::Create() { return Stream(reinterpret_cast<StreamHandle>(&handle_tag)); }
Stream::Stream(Stream&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
Stream& Stream::operator=(Stream&& other) noexcept {
  handle_ = std::exchange(other.handle_, nullptr);
  return *this;
}
Stream::~Stream() = default;
Status Stream::Synchronize() const { return Status::Ok(); }

Result<Event> Event::Create(bool /*timing*/) { return Event(reinterpret_cast<EventHandle>(&handle_tag)); }
Event::Event(Event&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
Event& Event::operator=(Event&& other) noexcept {
  handle_ = std::exchange(other.handle_, nullptr);
  return *this;
}
Event::~Event() = default;
Status Event::Record(StreamHandle) { return Status::Ok(); }
Status Event::MakeStreamWait(StreamHandle) const { return Status::Ok(); }
Status Event::Synchronize() const { return Status::Ok(); }
Result<bool> Event::Query() const { return true; }
Result<float> Event::ElapsedMs(const Event&, const Event&) { return 0.0f; }

// Fresh memory holds a pattern, as cudaMalloc's holds whatever was there: tests must write before they read.
Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  if (bytes == 0) return DeviceBuffer(nullptr, 0);
  void* p = nullptr;
  if (posix_memalign(&p, 256, bytes) != 0) return ResourceExhausted("emulated device memory: no room");
  std::memset(p, 0xa5, bytes);
  return DeviceBuffer(static_cast<std::byte*>(p), bytes);
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}
DeviceBuffer::~DeviceBuffer() { std::free(data_); }
Status DeviceBuffer::CopyFromHost(std::span<const std::byte> src, size_t offset) {
  if (offset > size_ || src.size() > size_ - offset) return InvalidArgument("copy past the device buffer's end");
  if (!src.empty()) std::memcpy(data_ + offset, src.data(), src.size());
  return Status::Ok();
}
Status DeviceBuffer::CopyToHost(std::span<std::byte> dst, size_t offset) const {
  if (offset > size_ || dst.size() > size_ - offset) return InvalidArgument("copy past the device buffer's end");
  if (!dst.empty()) std::memcpy(dst.data(), data_ + offset, dst.size());
  return Status::Ok();
}
Status DeviceBuffer::Fill(uint8_t value) {
  if (size_ != 0) std::memset(data_, value, size_);
  return Status::Ok();
}

}  // namespace kvtier::gpu
