// OpenCudaDeviceMemory: DeviceMemory over kvtier::gpu::DeviceArena (which answers UNAVAILABLE in builds
// without CUDA and on machines without a GPU, so this file builds everywhere).
#include <utility>

#include "kvtier/gpu/device_arena.h"
#include "kvtier/gpu/ipc.h"
#include "kvtier/kvstore/device_memory.h"

namespace kvtier {
namespace {

class CudaDeviceMemory final : public DeviceMemory {
 public:
  explicit CudaDeviceMemory(gpu::DeviceArena arena) : arena_(std::move(arena)) {}

  uint64_t size() const override { return arena_.size(); }
  int device() const override { return arena_.device(); }
  std::string name() const override {
    return arena_.device_name() + " (device " + std::to_string(arena_.device()) + ")";
  }
  void* base() const override { return arena_.data(); }
  Result<gpu::IpcExport> ExportIpc() const override { return gpu::ExportIpc(arena_.data(), arena_.device()); }
  gpu::PeerLinkKind peer_link_kind() const override { return gpu::PeerLinkKind::kNccl; }
  Status SendOver(gpu::PeerLink& link, uint64_t offset, uint64_t bytes) override {
    if (offset > arena_.size() || bytes > arena_.size() - offset) return InvalidArgument("send past the device arena");
    return link.Send(arena_.data() + offset, bytes);
  }
  Status CopyToDevice(uint64_t offset, std::span<const std::byte> src) override { return arena_.CopyIn(offset, src); }
  Status CopyToHost(uint64_t offset, std::span<std::byte> dst) override { return arena_.CopyOut(offset, dst); }

 private:
  gpu::DeviceArena arena_;
};

}  // namespace

Result<std::unique_ptr<DeviceMemory>> OpenCudaDeviceMemory(int device, uint64_t bytes) {
  auto arena = gpu::DeviceArena::Create(device, bytes);
  if (!arena.ok()) return arena.status();
  return std::unique_ptr<DeviceMemory>(new CudaDeviceMemory(std::move(arena).value()));
}

}  // namespace kvtier
