// DeviceMemory: the GPU tier's view of device memory, one arena reserved at start, behind a small
// interface so tests can stand in an emulation that injects faults (DESIGN §11). The tier decides what
// lives where; DeviceMemory only copies bytes between host memory and an offset of the arena.
//
// The production implementation (OpenCudaDeviceMemory) is a kvtier::gpu::DeviceArena: cudaMalloc'ed memory
// on one device with its own stream, synchronous copies. Implementations are thread-safe for copies to and
// from distinct ranges; the arena lives as long as the object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "kvtier/api/status.h"
#include "kvtier/gpu/ipc.h"
#include "kvtier/gpu/peer_link.h"

namespace kvtier {

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;

  virtual uint64_t size() const = 0;
  virtual int device() const = 0;
  // What backs the arena, for the start-up log, e.g. "NVIDIA H200 (device 0)".
  virtual std::string name() const = 0;
  // Address of the arena's first byte in the device's address space (what CUDA IPC exports); tests'
  // emulations return their host buffer.
  virtual void* base() const = 0;
  // The whole arena exported for CUDA IPC (kvtier/gpu/ipc.h), so that same-node workers copy chunks out of it
  // device-to-device. An error when it cannot be exported (the tier then serves those workers from DRAM).
  virtual Result<gpu::IpcExport> ExportIpc() const = 0;

  // The service's GPU channel (GPU_TIER.md "NCCL channel") sends arena bytes to another process's GPU over a
  // peer link of this kind, joined on device(): NCCL for device memory; an emulation says loopback.
  virtual gpu::PeerLinkKind peer_link_kind() const = 0;
  // Enqueues sending [offset, offset + bytes) over `link` (its Wait tells when it is done). INVALID_ARGUMENT
  // past the arena's end.
  virtual Status SendOver(gpu::PeerLink& link, uint64_t offset, uint64_t bytes) = 0;

  // Host -> device; returns once the bytes have landed. INVALID_ARGUMENT past the arena's end.
  virtual Status CopyToDevice(uint64_t offset, std::span<const std::byte> src) = 0;
  // Device -> host; returns once `dst` holds the bytes. INVALID_ARGUMENT past the arena's end.
  virtual Status CopyToHost(uint64_t offset, std::span<std::byte> dst) = 0;
};

// Reserves `bytes` on CUDA device `device`. UNAVAILABLE in a build without CUDA or on a machine without a
// usable GPU; RESOURCE_EXHAUSTED when the device lacks the memory; INVALID_ARGUMENT for an unknown device.
Result<std::unique_ptr<DeviceMemory>> OpenCudaDeviceMemory(int device, uint64_t bytes);

}  // namespace kvtier
