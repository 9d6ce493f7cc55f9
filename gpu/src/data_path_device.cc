// Device entry points of int8_dequant.h, host_gather.h and low_rank_keys.h, and HostRegistration over the
// CUDA runtime: the shared argument checks, then the launch parameters.
#include <cuda_runtime_api.h>

#include <cmath>
#include <string>
#include <utility>

#include "checks.h"
#include "cuda_kernels.h"
#include "element_math.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/host_gather.h"
#include "kvtier/gpu/int8_dequant.h"
#include "kvtier/gpu/low_rank_keys.h"

namespace kvtier::gpu {
namespace {

Status RequireGpu() {
  if (!GpuAvailable()) return Unavailable("no usable GPU: " + CachedProbe().reason);
  return Status::Ok();
}

Status FromCuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  cudaGetLastError();  // registration errors are not sticky; clear them for later checks
  return Internal(std::string(what) + ": " + cudaGetErrorString(err));
}

Status FromLaunch(const std::string& error) { return error.empty() ? Status::Ok() : Internal(error); }

}  // namespace

Status DequantizeInt8(const Int8Payload& payload, DType out_dtype, std::span<std::byte> out, StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(detail::CheckInt8Call(payload, out_dtype, out.data(), out.size()));
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  const ChunkShape& s = payload.shape;
  detail::Int8Params p{};
  p.body = reinterpret_cast<const unsigned char*>(payload.body.data());
  p.out = reinterpret_cast<unsigned char*>(out.data());
  p.num_layers = s.num_layers;
  p.num_tokens = s.num_tokens;
  p.row = uint64_t{s.num_kv_heads} * s.head_dim;
  p.stream_bytes = Int8StreamBytes(s);
  p.out_row_bytes = p.row * DTypeBytes(out_dtype);
  p.out_type = detail::ElementTypeOf(out_dtype);
  return FromLaunch(detail::LaunchInt8Dequant(p, stream));
}

Status GatherBlocks(const BlockGather& g, std::span<std::byte> out, StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(detail::CheckGatherCall(g, out.data(), out.size(), false));
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  detail::GatherParams p{};
  p.source = reinterpret_cast<const unsigned char*>(g.source);
  p.block_ids = g.block_ids;
  p.out = reinterpret_cast<unsigned char*>(out.data());
  p.num_blocks = g.num_blocks;
  p.num_selected = g.num_selected;
  p.block_bytes = g.block_bytes;
  const uintptr_t bits = static_cast<uintptr_t>(g.block_bytes) | reinterpret_cast<uintptr_t>(g.source) |
                         reinterpret_cast<uintptr_t>(out.data());
  uint32_t vector_bytes = 1;
  for (uint32_t width : {16u, 8u, 4u}) {
    if (bits % width == 0) {
      vector_bytes = width;
      break;
    }
  }
  return FromLaunch(detail::LaunchGather(p, vector_bytes, stream));
}

Status ReconstructKeys(const LowRankKeysView& keys, const KeyBlockSelection& sel, const RopeParams& rope,
                       DType dtype, std::span<std::byte> out, StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(detail::CheckReconstructCall(keys, sel, rope, dtype, out.data(), out.size(), true));
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  const LowRankShape& s = keys.shape;
  detail::LowRankParams p{};
  p.a = keys.a;
  p.b = keys.b;
  p.block_ids = sel.block_ids;
  p.out = reinterpret_cast<unsigned char*>(out.data());
  p.num_layers = s.num_layers;
  p.num_tokens = s.num_tokens;
  p.num_kv_heads = s.num_kv_heads;
  p.head_dim = s.head_dim;
  p.rank = s.rank;
  p.num_selected = sel.num_selected;
  p.block_size = sel.block_size;
  p.first_position = sel.first_position;
  p.out_elem_bytes = static_cast<uint32_t>(DTypeBytes(dtype));
  p.out_type = detail::ElementTypeOf(dtype);
  p.neox = rope.style == RopeStyle::kNeox;
  p.rotary_dim = rope.rotary_dim;
  // RotationTable's frequency expression, term for term (rope.cc).
  for (uint32_t i = 0; i < rope.rotary_dim / 2; ++i) p.frequency[i] = std::pow(rope.theta, -2.0 * i / rope.rotary_dim);
  return FromLaunch(detail::LaunchLowRank(p, stream));
}

namespace {

Result<void*> RegisterMapped(void* ptr, size_t bytes, unsigned flags) {
  if (ptr == nullptr || bytes == 0) return InvalidArgument("host range to register is null or empty");
  KVTIER_RETURN_IF_ERROR(RequireGpu());
  // Portable: pinned for every device's context, not only the current one.
  const cudaError_t err = cudaHostRegister(ptr, bytes, flags | cudaHostRegisterMapped | cudaHostRegisterPortable);
  if (err == cudaErrorHostMemoryAlreadyRegistered) {
    cudaGetLastError();  // not sticky, but leave no error behind for the next launch check
    return FailedPrecondition("host range is already registered with CUDA");
  }
  KVTIER_RETURN_IF_ERROR(FromCuda(err, "cudaHostRegister"));
  void* device = nullptr;
  if (const Status s = FromCuda(cudaHostGetDevicePointer(&device, ptr, 0), "cudaHostGetDevicePointer"); !s.ok()) {
    cudaHostUnregister(ptr);
    return s;
  }
  return device;
}

}  // namespace

Result<HostRegistration> HostRegistration::Register(void* ptr, size_t bytes) {
  auto device = RegisterMapped(ptr, bytes, 0);
  if (!device.ok()) return device.status();
  return HostRegistration(ptr, *device, bytes);
}

Result<HostRegistration> HostRegistration::RegisterReadOnly(const void* ptr, size_t bytes) {
  // CUDA takes a non-const pointer; with cudaHostRegisterReadOnly nothing writes through it.
  void* p = const_cast<void*>(ptr);
  auto device = RegisterMapped(p, bytes, cudaHostRegisterReadOnly);
  if (!device.ok()) return device.status();
  return HostRegistration(p, *device, bytes);
}

HostRegistration::HostRegistration(HostRegistration&& other) noexcept
    : host_(std::exchange(other.host_, nullptr)),
      device_(std::exchange(other.device_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

HostRegistration& HostRegistration::operator=(HostRegistration&& other) noexcept {
  if (this != &other) {
    if (host_ != nullptr) cudaHostUnregister(host_);
    host_ = std::exchange(other.host_, nullptr);
    device_ = std::exchange(other.device_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

HostRegistration::~HostRegistration() {
  if (host_ != nullptr) cudaHostUnregister(host_);
}

}  // namespace kvtier::gpu
