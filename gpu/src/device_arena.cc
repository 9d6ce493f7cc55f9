// DeviceArena over DeviceBuffer, Stream and CopyAsync; only the choice of device needs the CUDA runtime
// directly. In a build without CUDA, Create() answers UNAVAILABLE like every other device entry point.
#include "kvtier/gpu/device_arena.h"

#include <string>
#include <utility>

#include "kvtier/gpu/async_copy.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/stream.h"

#if defined(KVTIER_HAVE_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace kvtier::gpu {
namespace {

// Makes `device` current on this thread for the scope's life and restores the previous one: the current device
// is per thread, and the arena's callers (server threads) may use another device for their own work.
class DeviceScope {
 public:
  explicit DeviceScope(int device) : device_(device) {
#if defined(KVTIER_HAVE_CUDA)
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
    if (previous_ == device_) return;
    const cudaError_t err = cudaSetDevice(device_);
    if (err != cudaSuccess) {
      cudaGetLastError();
      status_ = Internal("cudaSetDevice(" + std::to_string(device_) + "): " + cudaGetErrorString(err));
    }
#endif
  }
  ~DeviceScope() {
#if defined(KVTIER_HAVE_CUDA)
    if (previous_ >= 0 && previous_ != device_) cudaSetDevice(previous_);
#endif
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

  const Status& status() const { return status_; }

 private:
  int device_;
  int previous_ = -1;
  Status status_;
};

Status CheckRange(size_t offset, size_t bytes, size_t size, const char* what) {
  if (offset <= size && bytes <= size - offset) return Status::Ok();
  return InvalidArgument(std::string(what) + " of " + std::to_string(bytes) + " bytes at offset " +
                         std::to_string(offset) + " does not fit a device arena of " + std::to_string(size) + " bytes");
}

}  // namespace

struct DeviceArena::State {
  int device = 0;
  std::string device_name;
  Stream stream;
  DeviceBuffer buffer;
};

Result<DeviceArena> DeviceArena::Create(int device, size_t bytes) {
  if (bytes == 0) return InvalidArgument("device arena of 0 bytes");
  const GpuProbe& probe = CachedProbe();
  if (probe.devices.empty()) return Unavailable("no usable GPU: " + probe.reason);
  const DeviceInfo* info = nullptr;
  for (const DeviceInfo& d : probe.devices) {
    if (d.ordinal == device) info = &d;
  }
  if (info == nullptr) {
    return InvalidArgument("GPU device " + std::to_string(device) + " does not exist (" +
                           std::to_string(probe.devices.size()) + " found)");
  }
  DeviceScope scope(device);
  KVTIER_RETURN_IF_ERROR(scope.status());
  auto stream = Stream::Create();
  if (!stream.ok()) return stream.status();
  auto buffer = DeviceBuffer::Allocate(bytes);
  if (!buffer.ok()) return buffer.status();
  return DeviceArena(std::unique_ptr<State>(
      new State{device, info->name, std::move(stream).value(), std::move(buffer).value()}));
}

DeviceArena::DeviceArena(std::unique_ptr<State> state) : state_(std::move(state)) {}

DeviceArena::DeviceArena(DeviceArena&& other) noexcept = default;

DeviceArena& DeviceArena::operator=(DeviceArena&& other) noexcept {
  if (this != &other) {
    DeviceArena old(std::move(*this));  // freed on its own device by its destructor
    state_ = std::move(other.state_);
  }
  return *this;
}

DeviceArena::~DeviceArena() {
  if (state_ == nullptr) return;
  DeviceScope scope(state_->device);
  state_.reset();
}

int DeviceArena::device() const { return state_->device; }
const std::string& DeviceArena::device_name() const { return state_->device_name; }
std::byte* DeviceArena::data() const { return state_->buffer.data(); }
size_t DeviceArena::size() const { return state_->buffer.size(); }

Status DeviceArena::CopyIn(size_t offset, std::span<const std::byte> src) {
  KVTIER_RETURN_IF_ERROR(CheckRange(offset, src.size(), size(), "copy to the device"));
  if (src.empty()) return Status::Ok();
  DeviceScope scope(state_->device);
  KVTIER_RETURN_IF_ERROR(scope.status());
  KVTIER_RETURN_IF_ERROR(CopyAsync(data() + offset, src.data(), src.size(), state_->stream.get()));
  return SynchronizeStream(state_->stream.get());
}

Status DeviceArena::CopyOut(size_t offset, std::span<std::byte> dst) const {
  KVTIER_RETURN_IF_ERROR(CheckRange(offset, dst.size(), size(), "copy from the device"));
  if (dst.empty()) return Status::Ok();
  DeviceScope scope(state_->device);
  KVTIER_RETURN_IF_ERROR(scope.status());
  KVTIER_RETURN_IF_ERROR(CopyAsync(dst.data(), data() + offset, dst.size(), state_->stream.get()));
  return SynchronizeStream(state_->stream.get());
}

}  // namespace kvtier::gpu
