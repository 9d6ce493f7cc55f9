// CUDA IPC: device memory shared between processes of one node. The exporter (the server's GPU tier) hands
// out a 64-byte handle of a cudaMalloc'ed block (cudaIpcGetMemHandle) with its device's PCI bus id; another
// process opens it (cudaIpcOpenMemHandle on its current device, peer access enabled lazily when that is
// another device) and then copies out of it device-to-device with ordinary copies (CopyAsync).
//
// A handle is meaningful only on the node that made it, and a process cannot open its own handles (CUDA
// refuses): the exporter and the opener are two processes. Every entry point answers UNAVAILABLE without CUDA
// or a GPU, INTERNAL with CUDA's message otherwise. IpcMapping owns the mapping (closed when destroyed);
// movable, not copyable; thread-safe to read from.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "kvtier/api/status.h"

namespace kvtier::gpu {

struct IpcExport {
  std::string handle;      // the cudaIpcMemHandle_t's 64 bytes
  std::string pci_bus_id;  // of the device the block lives on, e.g. "0000:18:00.0"
};

// The handle of the block that starts at `base` (a cudaMalloc'ed pointer) on device `device`.
Result<IpcExport> ExportIpc(const void* base, int device);

class IpcMapping {
 public:
  // Opens `exported` (exactly 64 handle bytes) in this process, `bytes` long, on the current device.
  // INVALID_ARGUMENT for a handle of another size.
  static Result<IpcMapping> Open(const IpcExport& exported, size_t bytes);

  IpcMapping(IpcMapping&& other) noexcept;
  IpcMapping& operator=(IpcMapping&& other) noexcept;
  IpcMapping(const IpcMapping&) = delete;
  IpcMapping& operator=(const IpcMapping&) = delete;
  ~IpcMapping();

  // Device address of the block's first byte in this process.
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  IpcMapping(const std::byte* data, size_t size) : data_(data), size_(size) {}
  const std::byte* data_ = nullptr;  // null once moved from
  size_t size_ = 0;
};

}  // namespace kvtier::gpu
