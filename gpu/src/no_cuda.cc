// Built when CUDA is off: the GPU entry points check their arguments like the CUDA build, then report that
// no GPU is available. Stream, Event and DeviceBuffer can never be created.
#include <utility>

#include "cachegen_host.h"
#include "checks.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/host_gather.h"
#include "kvtier/gpu/int8_dequant.h"
#include "kvtier/gpu/low_rank_keys.h"
#include "kvtier/gpu/iota.h"
#include "kvtier/gpu/paged_kv.h"
#include "kvtier/gpu/rope.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {
namespace {

Status NoCuda() { return Unavailable("kvtier was built without CUDA"); }

}  // namespace

GpuProbe ProbeDevices() { return GpuProbe{false, {}, "built without CUDA (KVTIER_WITH_CUDA=OFF or no nvcc)"}; }

Status IotaOnDevice(std::span<uint32_t>, uint32_t, uint32_t) { return NoCuda(); }

Status PackPagedKv(const PagedKvCache& cache, const SequenceSlice& seq, std::span<std::byte> chunk, StreamHandle) {
  KVTIER_RETURN_IF_ERROR(detail::CheckPagedCall(cache, seq, chunk.data(), chunk.size(), false, false));
  return NoCuda();
}

Status UnpackPagedKv(const PagedKvCache& cache, const SequenceSlice& seq, std::span<const std::byte> chunk,
                     const UnpackOptions& options, StreamHandle) {
  KVTIER_RETURN_IF_ERROR(detail::CheckPagedCall(cache, seq, chunk.data(), chunk.size(), false, true));
  KVTIER_RETURN_IF_ERROR(detail::CheckUnpackOptions(options, cache.shape, true));
  return NoCuda();
}

Status RerotateChunkKeys(const ChunkShape& shape, const RopeParams& rope, int64_t, std::span<std::byte> chunk,
                         StreamHandle) {
  KVTIER_RETURN_IF_ERROR(detail::CheckRerotateCall(shape, rope, chunk.data(), chunk.size(), true));
  return NoCuda();
}

Status DequantizeInt8(const Int8Payload& payload, DType out_dtype, std::span<std::byte> out, StreamHandle) {
  KVTIER_RETURN_IF_ERROR(detail::CheckInt8Call(payload, out_dtype, out.data(), out.size()));
  return NoCuda();
}

Status DecodeCachegen(std::span<const CachegenDeviceChunk> chunks, StreamHandle) {
  KVTIER_RETURN_IF_ERROR(CheckCachegenDeviceChunks(chunks));
  return NoCuda();
}

Status GatherBlocks(const BlockGather& gather, std::span<std::byte> out, StreamHandle) {
  KVTIER_RETURN_IF_ERROR(detail::CheckGatherCall(gather, out.data(), out.size(), false));
  return NoCuda();
}

Status ReconstructKeys(const LowRankKeysView& keys, const KeyBlockSelection& selection, const RopeParams& rope,
                       DType dtype, std::span<std::byte> out, StreamHandle) {
  KVTIER_RETURN_IF_ERROR(detail::CheckReconstructCall(keys, selection, rope, dtype, out.data(), out.size(), true));
  return NoCuda();
}

Result<HostRegistration> HostRegistration::Register(void* ptr, size_t bytes) {
  if (ptr == nullptr || bytes == 0) return InvalidArgument("host range to register is null or empty");
  return NoCuda();
}
Result<HostRegistration> HostRegistration::RegisterReadOnly(const void* ptr, size_t bytes) {
  if (ptr == nullptr || bytes == 0) return InvalidArgument("host range to register is null or empty");
  return NoCuda();
}
HostRegistration::HostRegistration(HostRegistration&& other) noexcept
    : host_(std::exchange(other.host_, nullptr)),
      device_(std::exchange(other.device_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}
HostRegistration& HostRegistration::operator=(HostRegistration&& other) noexcept {
  host_ = std::exchange(other.host_, nullptr);
  device_ = std::exchange(other.device_, nullptr);
  size_ = std::exchange(other.size_, 0);
  return *this;
}
HostRegistration::~HostRegistration() = default;

Result<Stream> Stream::Create() { return NoCuda(); }
Stream::Stream(Stream&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
Stream& Stream::operator=(Stream&& other) noexcept {
  handle_ = std::exchange(other.handle_, nullptr);
  return *this;
}
Stream::~Stream() = default;
Status Stream::Synchronize() const { return NoCuda(); }

Result<Event> Event::Create(bool) { return NoCuda(); }
Event::Event(Event&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
Event& Event::operator=(Event&& other) noexcept {
  handle_ = std::exchange(other.handle_, nullptr);
  return *this;
}
Event::~Event() = default;
Status Event::Record(StreamHandle) { return NoCuda(); }
Status Event::MakeStreamWait(StreamHandle) const { return NoCuda(); }
Status Event::Synchronize() const { return NoCuda(); }
Result<bool> Event::Query() const { return NoCuda(); }
Result<float> Event::ElapsedMs(const Event&, const Event&) { return NoCuda(); }

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t) { return NoCuda(); }
DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  data_ = std::exchange(other.data_, nullptr);
  size_ = std::exchange(other.size_, 0);
  return *this;
}
DeviceBuffer::~DeviceBuffer() = default;
Status DeviceBuffer::CopyFromHost(std::span<const std::byte>, size_t) { return NoCuda(); }
Status DeviceBuffer::CopyToHost(std::span<std::byte>, size_t) const { return NoCuda(); }
Status DeviceBuffer::Fill(uint8_t) { return NoCuda(); }

}  // namespace kvtier::gpu
