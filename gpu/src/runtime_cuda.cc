// Stream, Event and DeviceBuffer over the CUDA runtime (linked statically; the driver is loaded at run time).
#include <cuda_runtime_api.h>

#include <string>
#include <utility>

#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {
namespace {

Status FromCuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  // A failed allocation, say, is not sticky but stays the runtime's last error: clear it, or the next kernel
  // launch's check would report it as its own.
  cudaGetLastError();
  return Internal(std::string(what) + ": " + cudaGetErrorString(err));
}

Status RequireGpu() {
  if (!GpuAvailable()) return Unavailable("no usable GPU: " + CachedProbe().reason);
  return Status::Ok();
}

}  // namespace

Result<Stream> Stream::Create() {
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  cudaStream_t handle = nullptr;
  KVTIER_RETURN_IF_ERROR(FromCuda(cudaStreamCreateWithFlags(&handle, cudaStreamNonBlocking), "cudaStreamCreate"));
  return Stream(handle);
}

Stream::Stream(Stream&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cudaStreamDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

Stream::~Stream() {
  if (handle_ != nullptr) cudaStreamDestroy(handle_);
}

Status Stream::Synchronize() const { return FromCuda(cudaStreamSynchronize(handle_), "cudaStreamSynchronize"); }

Result<Event> Event::Create(bool timing) {
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  cudaEvent_t handle = nullptr;
  const unsigned flags = timing ? cudaEventDefault : cudaEventDisableTiming;
  KVTIER_RETURN_IF_ERROR(FromCuda(cudaEventCreateWithFlags(&handle, flags), "cudaEventCreate"));
  return Event(handle);
}

Event::Event(Event&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cudaEventDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

Event::~Event() {
  if (handle_ != nullptr) cudaEventDestroy(handle_);
}

Status Event::Record(StreamHandle stream) { return FromCuda(cudaEventRecord(handle_, stream), "cudaEventRecord"); }

Status Event::MakeStreamWait(StreamHandle stream) const {
  return FromCuda(cudaStreamWaitEvent(stream, handle_, 0), "cudaStreamWaitEvent");
}

Status Event::Synchronize() const { return FromCuda(cudaEventSynchronize(handle_), "cudaEventSynchronize"); }

Result<bool> Event::Query() const {
  const cudaError_t err = cudaEventQuery(handle_);
  if (err == cudaSuccess) return true;
  if (err == cudaErrorNotReady) {
    cudaGetLastError();  // not-ready is not sticky, but clear it so later checks do not see it
    return false;
  }
  return FromCuda(err, "cudaEventQuery");
}

Result<float> Event::ElapsedMs(const Event& start, const Event& end) {
  float ms = 0;
  KVTIER_RETURN_IF_ERROR(FromCuda(cudaEventElapsedTime(&ms, start.handle_, end.handle_), "cudaEventElapsedTime"));
  return ms;
}

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  if (bytes == 0) return DeviceBuffer(nullptr, 0);
  void* data = nullptr;
  const cudaError_t err = cudaMalloc(&data, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return ResourceExhausted("cudaMalloc of " + std::to_string(bytes) + " bytes: out of device memory");
  }
  KVTIER_RETURN_IF_ERROR(FromCuda(err, "cudaMalloc"));
  return DeviceBuffer(static_cast<std::byte*>(data), bytes);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

Status DeviceBuffer::CopyFromHost(std::span<const std::byte> src, size_t offset) {
  if (offset > size_ || src.size() > size_ - offset) {
    return InvalidArgument(std::to_string(src.size()) + " bytes at offset " + std::to_string(offset) +
                           " do not fit a device buffer of " + std::to_string(size_));
  }
  if (src.empty()) return Status::Ok();
  KVTIER_RETURN_IF_ERROR(
      FromCuda(cudaMemcpy(data_ + offset, src.data(), src.size(), cudaMemcpyHostToDevice), "cudaMemcpy H2D"));
  // From pageable memory cudaMemcpy may return before the DMA lands; work on other (non-blocking) streams is
  // not ordered after the default stream, so wait here to keep the promise that the copy is done.
  return FromCuda(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
}

Status DeviceBuffer::CopyToHost(std::span<std::byte> dst, size_t offset) const {
  if (offset > size_ || dst.size() > size_ - offset) {
    return InvalidArgument(std::to_string(dst.size()) + " bytes at offset " + std::to_string(offset) +
                           " exceed a device buffer of " + std::to_string(size_));
  }
  if (dst.empty()) return Status::Ok();
  return FromCuda(cudaMemcpy(dst.data(), data_ + offset, dst.size(), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

Status DeviceBuffer::Fill(uint8_t value) {
  if (size_ == 0) return Status::Ok();
  KVTIER_RETURN_IF_ERROR(FromCuda(cudaMemset(data_, value, size_), "cudaMemset"));
  return FromCuda(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
}

}  // namespace kvtier::gpu
