// DeviceArena: one block of memory reserved up front on a chosen GPU, with its own stream, for the kvstore
// GPU tier. The tier carves the block into extents itself; the arena only moves bytes between host memory
// and an offset of the block, and tells where the block is (its device pointer, for CUDA IPC export).
//
// Copies are synchronous: each enqueues on the arena's stream and waits for it, so when a copy returns the
// bytes have landed (from pinned host memory the DMA reads the host range directly; from pageable memory the
// driver stages it). Every call first makes the arena's device current on the calling thread and restores the
// previous one afterwards, so callers on any thread need not care which device is current.
//
// Ownership: the arena owns its memory and stream (DeviceBuffer, Stream) and frees them, on its device, when
// destroyed. Movable, not copyable. Thread-safe for copies to and from distinct ranges (enqueueing is; a copy
// also waits for other threads' copies queued before it). Without CUDA, or without a usable GPU, Create()
// answers UNAVAILABLE.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "kvtier/api/status.h"

namespace kvtier::gpu {

class DeviceArena {
 public:
  // Reserves `bytes` (> 0) on device `device` (a CachedProbe() ordinal). INVALID_ARGUMENT for an empty arena
  // or an unknown device; UNAVAILABLE without CUDA or a GPU; RESOURCE_EXHAUSTED when the device has not that
  // much free memory; INTERNAL for other CUDA errors.
  static Result<DeviceArena> Create(int device, size_t bytes);

  DeviceArena(DeviceArena&& other) noexcept;
  DeviceArena& operator=(DeviceArena&& other) noexcept;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena();

  int device() const;
  // The device's name as the probe reported it, for logs.
  const std::string& device_name() const;
  // Device address of the block's first byte.
  std::byte* data() const;
  size_t size() const;

  // Host -> device: `src` lands at [offset, offset + src.size()). INVALID_ARGUMENT when it does not fit.
  Status CopyIn(size_t offset, std::span<const std::byte> src);
  // Device -> host: [offset, offset + dst.size()) into `dst`. INVALID_ARGUMENT when it does not fit.
  Status CopyOut(size_t offset, std::span<std::byte> dst) const;

 private:
  struct State;
  explicit DeviceArena(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;  // null once moved from
};

}  // namespace kvtier::gpu
