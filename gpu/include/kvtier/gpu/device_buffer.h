// DeviceBuffer: an owning block of GPU memory (cudaMalloc / cudaFree) with synchronous copies to and from
// host memory. The plumbing tests and the GPU tier use to stage data for the kernels; hot paths enqueue
// their own asynchronous copies on a stream instead.
//
// Movable, not copyable; the destructor frees the memory (after the device finishes using it, as cudaFree
// does). Without CUDA, or without a usable GPU, Allocate() answers UNAVAILABLE. Not synchronized: share a
// buffer across threads only with the caller's own ordering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kvtier/api/status.h"

namespace kvtier::gpu {

class DeviceBuffer {
 public:
  // `bytes` of device memory on the current device (0 is allowed: data() is then nullptr).
  static Result<DeviceBuffer> Allocate(size_t bytes);

  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_, size_}; }

  // Copies `src` to offset `offset`; INVALID_ARGUMENT when it does not fit. Blocks until done.
  Status CopyFromHost(std::span<const std::byte> src, size_t offset = 0);
  // Copies dst.size() bytes from offset `offset` into host memory `dst`. Blocks until done.
  Status CopyToHost(std::span<std::byte> dst, size_t offset = 0) const;
  // Sets every byte to `value` (tests poison outputs with 0xFF). Blocks until done.
  Status Fill(uint8_t value);

 private:
  DeviceBuffer(std::byte* data, size_t size) : data_(data), size_(size) {}
  std::byte* data_ = nullptr;  // owned device memory
  size_t size_ = 0;
};

}  // namespace kvtier::gpu
