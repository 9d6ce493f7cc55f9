#include "transfer_backend.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvtier/gpu/async_copy.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/host_gather.h"
#include "kvtier/gpu/ipc.h"

namespace kvtier::internal {
namespace {

// Page-aligned anonymous memory, faulted in once here: first touch of fresh memory is slow, and a get should
// not pay it. Owns the mapping.
class MappedBuffer {
 public:
  static Result<MappedBuffer> Create(uint64_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) {
      return ResourceExhausted("transfer staging: mmap of " + std::to_string(bytes) + " bytes: " + std::strerror(errno));
    }
    return MappedBuffer(static_cast<std::byte*>(p), bytes);
  }
  MappedBuffer(MappedBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(o.size_) {}
  MappedBuffer& operator=(MappedBuffer&&) = delete;
  MappedBuffer(const MappedBuffer&) = delete;
  ~MappedBuffer() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  std::span<std::byte> span() const { return {data_, size_}; }

 private:
  MappedBuffer(std::byte* data, uint64_t size) : data_(data), size_(size) {}
  std::byte* data_;
  uint64_t size_;
};

// The CPU twin: host buffers, memcpy and the kernels' CPU twins, nothing to order.
class HostBackend final : public TransferBackend {
 public:
  HostBackend(MappedBuffer host, MappedBuffer device, std::optional<MappedBuffer> encoded, uint32_t layers)
      : TransferBackend(layers), host_(std::move(host)), device_(std::move(device)), encoded_(std::move(encoded)) {}

  std::span<std::byte> host_staging() override { return host_.span(); }
  std::span<std::byte> device_staging() override { return device_.span(); }
  std::span<std::byte> encoded_staging() override { return encoded_ ? encoded_->span() : std::span<std::byte>(); }
  gpu::StreamHandle copy_stream() const override { return nullptr; }
  Status PrepareSource(const LeasedArena&) override { return Status::Ok(); }
  Result<const std::byte*> PrepareGpuSource(const LeasedArena&) override {
    return Unavailable("the CPU twin reads no GPU memory");
  }
  Status Copy(void* dst, const void* src, size_t bytes, gpu::StreamHandle) override {
    std::memcpy(dst, src, bytes);
    return Status::Ok();
  }
  Status Unpack(const gpu::PagedKvCache& cache, const gpu::SequenceSlice& seq, std::span<const std::byte> chunk,
                const gpu::UnpackOptions& options, gpu::StreamHandle) override {
    return gpu::UnpackPagedKvCpu(cache, seq, chunk, options);
  }
  Status Pack(const gpu::PagedKvCache& cache, const gpu::SequenceSlice& seq, std::span<std::byte> chunk,
              gpu::StreamHandle) override {
    return gpu::PackPagedKvCpu(cache, seq, chunk);
  }
  Result<std::span<const std::byte>> KeepResident(std::span<const std::byte> bytes) override {
    resident_.emplace_back(bytes.begin(), bytes.end());  // operator new: 16-byte aligned
    return std::span<const std::byte>(resident_.back());
  }
  Status DequantizeInt8(const gpu::Int8Payload& payload, DType out_dtype, std::span<std::byte> out,
                        gpu::StreamHandle) override {
    return gpu::DequantizeInt8Cpu(payload, out_dtype, out);
  }
  Status DecodeCachegen(std::span<const gpu::CachegenDeviceChunk> chunks, gpu::StreamHandle) override {
    return gpu::DecodeCachegenCpu(chunks);  // reads the stagings as the kernel would: a wrong offset shows here too
  }
  Status Record(uint32_t, gpu::StreamHandle) override { return Status::Ok(); }
  Status StreamWait(uint32_t, gpu::StreamHandle) override { return Status::Ok(); }
  Status HostWait(uint32_t) override { return Status::Ok(); }
  Status DrainCopies() override { return Status::Ok(); }
  Status Drain(gpu::StreamHandle) override { return Status::Ok(); }
  std::span<const gpu::Event> layer_events() const override { return {}; }

 private:
  MappedBuffer host_;
  MappedBuffer device_;
  std::optional<MappedBuffer> encoded_;
  std::deque<std::vector<std::byte>> resident_;  // a deque: spans handed out stay valid
};

// The GPU: pinned host staging, device staging, a copy stream of its own and the events that order them.
class DeviceBackend final : public TransferBackend {
 public:
  DeviceBackend(MappedBuffer host, gpu::HostRegistration pin, gpu::DeviceBuffer device,
                std::optional<gpu::DeviceBuffer> encoded, gpu::Stream copy, std::vector<gpu::Event> events,
                uint32_t layers)
      : TransferBackend(layers),
        host_(std::move(host)),
        pin_(std::move(pin)),
        device_(std::move(device)),
        encoded_(std::move(encoded)),
        copy_(std::move(copy)),
        events_(std::move(events)),
        recorded_(events_.size(), false) {}

  ~DeviceBackend() override {
    // Nothing may still read the staging or the arena when they are unregistered and freed.
    (void)copy_.Synchronize();
    for (size_t i = 0; i < events_.size(); ++i) {
      if (recorded_[i]) (void)events_[i].Synchronize();
    }
    arena_pin_.reset();
    server_gpu_.reset();
  }

  std::span<std::byte> host_staging() override { return host_.span(); }
  std::span<std::byte> device_staging() override { return device_.span(); }
  std::span<std::byte> encoded_staging() override { return encoded_ ? encoded_->span() : std::span<std::byte>(); }
  gpu::StreamHandle copy_stream() const override { return copy_.get(); }
  Status PrepareSource(const LeasedArena& arena) override {
    if (arena_keep_alive_ == arena.keep_alive) return Status::Ok();
    // A new mapping (first use, or the server restarted): earlier copies out of the old one must be done before
    // it is unregistered and may be unmapped.
    KVTIER_RETURN_IF_ERROR(DrainCopies());
    arena_pin_.reset();
    arena_keep_alive_.reset();
    server_gpu_.reset();  // a new mapping means another server instance: its GPU arena is another one too
    auto pin = gpu::HostRegistration::RegisterReadOnly(arena.bytes.data(), arena.bytes.size());
    if (pin.ok()) {
      arena_pin_.emplace(std::move(*pin));
    } else if (pin.status().code() != StatusCode::kFailedPrecondition) {
      return pin.status();
    }
    // FAILED_PRECONDITION: another transfer of this process registered the same mapping; copies are DMA while it
    // lives (and still correct, staged by the driver, after it is gone).
    arena_keep_alive_ = arena.keep_alive;
    return Status::Ok();
  }
  Result<const std::byte*> PrepareGpuSource(const LeasedArena& arena) override {
    if (server_gpu_ && server_gpu_handle_ == arena.gpu_ipc_handle) return server_gpu_->data();
    // Another handle (first use, or a server restart): copies out of the old mapping must be done first.
    KVTIER_RETURN_IF_ERROR(DrainCopies());
    server_gpu_.reset();
    auto opened = gpu::IpcMapping::Open({arena.gpu_ipc_handle, arena.gpu_pci_bus_id}, arena.gpu_arena_bytes);
    if (!opened.ok()) return opened.status();
    server_gpu_.emplace(std::move(*opened));
    server_gpu_handle_ = arena.gpu_ipc_handle;
    return server_gpu_->data();
  }
  Status Copy(void* dst, const void* src, size_t bytes, gpu::StreamHandle stream) override {
    return gpu::CopyAsync(dst, src, bytes, stream);
  }
  Status Unpack(const gpu::PagedKvCache& cache, const gpu::SequenceSlice& seq, std::span<const std::byte> chunk,
                const gpu::UnpackOptions& options, gpu::StreamHandle stream) override {
    return gpu::UnpackPagedKv(cache, seq, chunk, options, stream);
  }
  Status Pack(const gpu::PagedKvCache& cache, const gpu::SequenceSlice& seq, std::span<std::byte> chunk,
              gpu::StreamHandle stream) override {
    return gpu::PackPagedKv(cache, seq, chunk, stream);
  }
  Result<std::span<const std::byte>> KeepResident(std::span<const std::byte> bytes) override {
    auto buffer = gpu::DeviceBuffer::Allocate(bytes.size());  // cudaMalloc: 256-byte aligned
    if (!buffer.ok()) return buffer.status();
    KVTIER_RETURN_IF_ERROR(buffer->CopyFromHost(bytes));
    resident_.push_back(std::move(*buffer));
    return std::span<const std::byte>(resident_.back().data(), bytes.size());
  }
  Status DequantizeInt8(const gpu::Int8Payload& payload, DType out_dtype, std::span<std::byte> out,
                        gpu::StreamHandle stream) override {
    return gpu::DequantizeInt8(payload, out_dtype, out, stream);
  }
  Status DecodeCachegen(std::span<const gpu::CachegenDeviceChunk> chunks, gpu::StreamHandle stream) override {
    return gpu::DecodeCachegen(chunks, stream);
  }
  Status Record(uint32_t slot, gpu::StreamHandle stream) override {
    KVTIER_RETURN_IF_ERROR(events_[slot].Record(stream));
    recorded_[slot] = true;
    return Status::Ok();
  }
  Status StreamWait(uint32_t slot, gpu::StreamHandle stream) override {
    return recorded_[slot] ? events_[slot].MakeStreamWait(stream) : Status::Ok();
  }
  Status HostWait(uint32_t slot) override { return recorded_[slot] ? events_[slot].Synchronize() : Status::Ok(); }
  Status DrainCopies() override { return copy_.Synchronize(); }
  Status Drain(gpu::StreamHandle stream) override {
    const Status copies = copy_.Synchronize();
    const Status other = gpu::SynchronizeStream(stream);
    return copies.ok() ? other : copies;
  }
  std::span<const gpu::Event> layer_events() const override {
    return std::span<const gpu::Event>(events_).subspan(LayerReadySlot(0), num_layers_);
  }

 private:
  MappedBuffer host_;
  gpu::HostRegistration pin_;  // declared after host_: unregistered before the memory is unmapped
  gpu::DeviceBuffer device_;
  std::optional<gpu::DeviceBuffer> encoded_;
  std::deque<gpu::DeviceBuffer> resident_;
  gpu::Stream copy_;
  std::vector<gpu::Event> events_;
  std::vector<bool> recorded_;  // an event never recorded counts as complete
  // The server's shared arena registered as a copy source; the keep-alive is released after the registration.
  std::shared_ptr<const void> arena_keep_alive_;
  std::optional<gpu::HostRegistration> arena_pin_;
  // The server's GPU tier arena opened by CUDA IPC, and the handle it was opened from.
  std::optional<gpu::IpcMapping> server_gpu_;
  std::string server_gpu_handle_;
};

Result<std::unique_ptr<TransferBackend>> CreateDevice(uint64_t staging_bytes, uint32_t layers, bool decode) {
  auto host = MappedBuffer::Create(staging_bytes);
  if (!host.ok()) return host.status();
  auto pin = gpu::HostRegistration::Register(host->span().data(), staging_bytes);
  if (!pin.ok()) return pin.status();
  auto device = gpu::DeviceBuffer::Allocate(staging_bytes);
  if (!device.ok()) return device.status();
  KVTIER_RETURN_IF_ERROR(device->Fill(0));  // touch it once, as the host side is
  std::optional<gpu::DeviceBuffer> encoded;
  if (decode) {
    auto buffer = gpu::DeviceBuffer::Allocate(staging_bytes);
    if (!buffer.ok()) return buffer.status();
    KVTIER_RETURN_IF_ERROR(buffer->Fill(0));
    encoded.emplace(std::move(*buffer));
  }
  auto copy = gpu::Stream::Create();
  if (!copy.ok()) return copy.status();
  std::vector<gpu::Event> events;
  const uint32_t slots = 2 * layers + TransferBackend::kCopied;
  events.reserve(slots);
  for (uint32_t i = 0; i < slots; ++i) {
    auto e = gpu::Event::Create();
    if (!e.ok()) return e.status();
    events.push_back(std::move(*e));
  }
  return std::unique_ptr<TransferBackend>(new DeviceBackend(std::move(*host), std::move(*pin), std::move(*device),
                                                            std::move(encoded), std::move(*copy), std::move(events),
                                                            layers));
}

}  // namespace

Result<std::unique_ptr<TransferBackend>> TransferBackend::Create(TransferPlacement placement, uint64_t staging_bytes,
                                                                 uint32_t num_layers, bool decode) {
  if (placement == TransferPlacement::kDevice) return CreateDevice(staging_bytes, num_layers, decode);
  auto host = MappedBuffer::Create(staging_bytes);
  if (!host.ok()) return host.status();
  auto device = MappedBuffer::Create(staging_bytes);
  if (!device.ok()) return device.status();
  std::optional<MappedBuffer> encoded;
  if (decode) {
    auto buffer = MappedBuffer::Create(staging_bytes);
    if (!buffer.ok()) return buffer.status();
    encoded.emplace(std::move(*buffer));
  }
  return std::unique_ptr<TransferBackend>(
      new HostBackend(std::move(*host), std::move(*device), std::move(encoded), num_layers));
}

}  // namespace kvtier::internal
