// EmulatedDeviceMemory: a TEST DOUBLE of the GPU tier's DeviceMemory, so the GPU tier's logic runs and is
// tested on machines without a GPU (CI). The "device" is a host buffer that the store never maps: it is only
// reached through CopyToDevice/CopyToHost, as real device memory is.
//
// Faults really happen: a failing copy to the device writes half of its bytes and then fails (a torn
// write the store must never publish), a failing copy to the host scribbles over the host buffer and then
// fails (bytes the store must never serve), and a failing reservation makes the open fail. Knobs are atomics,
// so a test can flip them while a server runs. Fresh "device" memory is poisoned (0xA5), so a read of bytes
// never written shows up in a byte comparison.
#pragma once

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "kvtier/kvstore/device_memory.h"
#include "kvtier/kvstore/store.h"
#include "fault_budget.h"

namespace kvtier::testing {

struct DeviceFaultKnobs {
  std::atomic<int> fail_to_device{0};  // next N host -> device copies fail (-1: all)
  std::atomic<int> fail_to_host{0};    // next N device -> host copies fail (-1: all)
  std::atomic<bool> fail_open{false};  // reserving the arena fails (RESOURCE_EXHAUSTED, like cudaMalloc)
  std::atomic<int> fail_sends{0};      // next N sends over a peer link fail before sending (-1: all)
  std::atomic<uint64_t> sends{0};      // sends over peer links attempted
  std::atomic<uint64_t> to_device{0}, to_host{0};  // copies attempted
  std::atomic<int> opened_device{-1};              // the device the store asked for
  std::atomic<const std::byte*> memory{nullptr};   // the emulated arena, for tests that look at what it holds
};

class EmulatedDeviceMemory final : public DeviceMemory {
 public:
  EmulatedDeviceMemory(int device, uint64_t bytes, std::shared_ptr<DeviceFaultKnobs> knobs)
      : device_(device), memory_(bytes, std::byte{0xa5}), knobs_(std::move(knobs)) {}

  uint64_t size() const override { return memory_.size(); }
  int device() const override { return device_; }
  std::string name() const override { return "emulated GPU (device " + std::to_string(device_) + ")"; }
  void* base() const override { return const_cast<std::byte*>(memory_.data()); }
  // Stands in for a CUDA IPC handle: 64 bytes naming the emulation (no process can open it), so the tests see
  // what the server hands its local clients.
  Result<gpu::IpcExport> ExportIpc() const override {
    std::string handle = "emulated IPC handle of device " + std::to_string(device_);
    handle.resize(64, '\0');
    return gpu::IpcExport{handle, "emulated:" + std::to_string(device_)};
  }

  // The twin of NCCL: the service's GPU channel runs over a loopback link (both ends in the test's process).
  gpu::PeerLinkKind peer_link_kind() const override { return gpu::PeerLinkKind::kLoopback; }
  Status SendOver(gpu::PeerLink& link, uint64_t offset, uint64_t bytes) override {
    knobs_->sends.fetch_add(1);
    KVTIER_RETURN_IF_ERROR(Check(offset, bytes));
    if (TakeFault(knobs_->fail_sends)) return Internal("ncclSend: unhandled system error (injected)");
    return link.Send(memory_.data() + offset, bytes);
  }

  Status CopyToDevice(uint64_t offset, std::span<const std::byte> src) override {
    knobs_->to_device.fetch_add(1);
    KVTIER_RETURN_IF_ERROR(Check(offset, src.size()));
    if (TakeFault(knobs_->fail_to_device)) {
      std::memcpy(memory_.data() + offset, src.data(), src.size() / 2);
      return Internal("cudaMemcpyAsync: unspecified launch failure (injected)");
    }
    std::memcpy(memory_.data() + offset, src.data(), src.size());
    return Status::Ok();
  }

  Status CopyToHost(uint64_t offset, std::span<std::byte> dst) override {
    knobs_->to_host.fetch_add(1);
    KVTIER_RETURN_IF_ERROR(Check(offset, dst.size()));
    if (TakeFault(knobs_->fail_to_host)) {
      std::memset(dst.data(), 0x5a, dst.size());
      return Internal("cudaStreamSynchronize: an illegal memory access was encountered (injected)");
    }
    std::memcpy(dst.data(), memory_.data() + offset, dst.size());
    return Status::Ok();
  }

 private:
  Status Check(uint64_t offset, uint64_t bytes) const {
    if (offset <= memory_.size() && bytes <= memory_.size() - offset) return Status::Ok();
    return InvalidArgument("copy past the device arena");
  }

  const int device_;
  std::vector<std::byte> memory_;
  std::shared_ptr<DeviceFaultKnobs> knobs_;
};

// A GpuOptions::open_device hook that reserves an EmulatedDeviceMemory (or fails, per the knobs).
inline auto OpenEmulatedDevice(std::shared_ptr<DeviceFaultKnobs> knobs) {
  return [knobs](int device, uint64_t bytes) -> Result<std::unique_ptr<DeviceMemory>> {
    knobs->opened_device.store(device);
    if (knobs->fail_open) {
      return ResourceExhausted("cudaMalloc of " + std::to_string(bytes) + " bytes: out of memory (injected)");
    }
    auto memory = std::make_unique<EmulatedDeviceMemory>(device, bytes, knobs);
    knobs->memory.store(static_cast<const std::byte*>(memory->base()));
    return std::unique_ptr<DeviceMemory>(std::move(memory));
  };
}

}  // namespace kvtier::testing
