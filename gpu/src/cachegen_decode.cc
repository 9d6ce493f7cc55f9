// The CPU twins of cachegen decoding (cachegen_decode.h): the kernel's per-stream decode (cachegen_stream.h),
// one stream after another, for one plan or for a device decode's chunks in host memory. Compiled with
// -ffp-contract=off, as the kernel is with --fmad=false.
#include <vector>

#include "cachegen_host.h"
#include "kvtier/gpu/cachegen_decode.h"

namespace kvtier::gpu {

Status DecodeCachegenCpu(const CachegenPlan& plan, DType out_dtype, std::span<std::byte> out) {
  KVTIER_RETURN_IF_ERROR(detail::CheckCachegenPlan(plan));
  KVTIER_RETURN_IF_ERROR(detail::CheckCachegenOutput(plan, out_dtype, out.data(), out.size()));
  const detail::CachegenChunkView view =
      detail::CachegenView(plan, out_dtype, plan.body.data(), plan.streams.data(), plan.Tables().data(), out.data());
  // Streams run one at a time here, so they share one anchor row.
  std::vector<float> anchor(plan.anchor_delta ? view.width : 0);
  for (uint32_t i = 0; i < view.num_streams; ++i) {
    const uint32_t code = detail::DecodeCachegenStream(view, i, anchor.data());
    KVTIER_RETURN_IF_ERROR(detail::CachegenStreamStatus(plan, i, code));
  }
  return Status::Ok();
}

Status DecodeCachegenCpu(std::span<const CachegenDeviceChunk> chunks) {
  KVTIER_RETURN_IF_ERROR(CheckCachegenDeviceChunks(chunks));
  for (const CachegenDeviceChunk& c : chunks) {
    const detail::CachegenChunkView v = detail::DeviceChunkView(c);
    for (uint32_t i = 0; i < v.num_streams; ++i) {
      float* anchor = v.anchor_delta ? v.anchors + uint64_t{i} * v.width : nullptr;
      v.errors[i] = detail::DecodeCachegenStream(v, i, anchor);
    }
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu
