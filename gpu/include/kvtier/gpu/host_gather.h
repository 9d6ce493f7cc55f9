// ShadowKV-style direct gather: the selected blocks of a block array in pinned host memory are read by the
// GPU straight over the bus (zero-copy through unified virtual addressing) into a contiguous device buffer,
// without staging them in device memory first. HostRegistration pins and maps an existing host range
// (cudaHostRegister with cudaHostRegisterMapped) and gives the pointer kernels dereference.
//
// Layout: the source is `num_blocks` blocks of `block_bytes` bytes each, back to back (for example one
// layer's V of a paged cache, [num_blocks, block_size, kv_heads, head_dim]). Block `block_ids[i]` lands at
// out[i * block_bytes, (i + 1) * block_bytes). Ids may repeat (each lands in its own slot).
//
// Ownership: HostRegistration owns the registration, not the memory: the caller keeps the range alive and
// unmoved while registered; the destructor unregisters (after the caller has finished every kernel that reads
// it). Movable, not copyable; without CUDA or a usable GPU Register() answers UNAVAILABLE. Validation follows
// paged_kv.h: the twin checks every id (range); the device variant takes the ids in device memory, cannot
// read them on the host, and skips (never reads or writes) a slot whose id is out of range. Stateless
// functions, thread-safe on distinct buffers; the device variant only enqueues on `stream`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kvtier/api/status.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {

class HostRegistration {
 public:
  // Pins and maps [ptr, ptr + bytes) (bytes > 0) for device access. INVALID_ARGUMENT for a null or empty
  // range; UNAVAILABLE without CUDA or a GPU; FAILED_PRECONDITION for a range already registered in this
  // process; INTERNAL when CUDA refuses otherwise.
  static Result<HostRegistration> Register(void* ptr, size_t bytes);
  // The same for a range this process maps read-only (PROT_READ, such as a server's shared arena):
  // registered with cudaHostRegisterReadOnly, so the device only reads it. INTERNAL where the GPU or
  // driver cannot register read-only memory (the caller then copies through its own pinned buffer).
  static Result<HostRegistration> RegisterReadOnly(const void* ptr, size_t bytes);

  HostRegistration(HostRegistration&& other) noexcept;
  HostRegistration& operator=(HostRegistration&& other) noexcept;
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;
  ~HostRegistration();

  void* host() const { return host_; }
  // The pointer device code dereferences to reach host() (cudaHostGetDevicePointer; equal to host() on
  // systems with unified addressing).
  void* device_pointer() const { return device_; }
  size_t size() const { return size_; }

 private:
  HostRegistration(void* host, void* device, size_t size) : host_(host), device_(device), size_(size) {}
  void* host_ = nullptr;    // registered (not owned) host memory
  void* device_ = nullptr;  // its device-side address
  size_t size_ = 0;
};

struct BlockGather {
  const std::byte* source = nullptr;  // num_blocks * block_bytes bytes: host memory (twin) or a mapped pointer
  uint32_t num_blocks = 0;            // blocks in the source, > 0
  uint64_t block_bytes = 0;           // bytes per block, > 0
  const int32_t* block_ids = nullptr; // num_selected ids: host memory (twin) or device memory (kernel)
  uint32_t num_selected = 0;          // > 0
};

// out must be exactly num_selected * block_bytes bytes.
uint64_t GatherOutputBytes(const BlockGather& gather);

// CPU twin: source, ids and out in host memory.
Status GatherBlocksCpu(const BlockGather& gather, std::span<std::byte> out);

// The kernel: `source` is a device-accessible pointer to pinned, mapped host memory (device_pointer() of a
// HostRegistration, or cudaHostAlloc(..., cudaHostAllocMapped)); ids and out are device memory. Reads move 16
// bytes at a time when the block size and the pointers allow it, else 8, 4 or 1. Arguments are checked first
// (INVALID_ARGUMENT), then UNAVAILABLE without CUDA or a GPU; INTERNAL for a launch error.
Status GatherBlocks(const BlockGather& gather, std::span<std::byte> out, StreamHandle stream = nullptr);

}  // namespace kvtier::gpu
