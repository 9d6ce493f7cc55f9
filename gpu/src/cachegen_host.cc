// Sizes, the device image, argument checks and the error mapping of cachegen decoding (cachegen_decode.h,
// cachegen_host.h).
#include "cachegen_host.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cstring>
#include <string>

#include "cachegen_layout.h"
#include "checks.h"
#include "element_math.h"

namespace kvtier::gpu {
namespace {

std::string Str(uint64_t v) { return std::to_string(v); }

bool Aligned(const void* p, size_t alignment) { return reinterpret_cast<uintptr_t>(p) % alignment == 0; }

constexpr size_t kDeviceAlignment = 16;  // image and workspace: records and anchors read at their own widths

uint64_t RoundUp16(uint64_t v) { return (v + 15) / 16 * 16; }
uint32_t Width(const CachegenPlan& plan) { return plan.shape.num_kv_heads * plan.shape.head_dim; }
uint32_t Kinds(const CachegenPlan& plan) { return plan.anchor_delta ? 2 : 1; }

// The largest finite value of the chunk's dtype, as the codec clamps to it.
float MaxFinite(DType dtype) {
  switch (dtype) {
    case DType::kFp16: return 65504.0f;
    case DType::kBf16: return std::bit_cast<float>(uint32_t{0x7f7f0000});
    default: return FLT_MAX;
  }
}

Status BadRecord(size_t i, const std::string& what) {
  return InvalidArgument("cachegen plan stream record " + Str(i) + " " + what);
}

// Record i against the geometry the container implies: slice-major, sub-chunks of tokens_per_stream tokens.
Status CheckRecord(const CachegenPlan& plan, size_t i, uint32_t sub_chunks) {
  const CachegenStream& s = plan.streams[i];
  const uint32_t first = static_cast<uint32_t>(i % sub_chunks) * plan.tokens_per_stream;
  const uint32_t rows = std::min(plan.shape.num_tokens - first, plan.tokens_per_stream);
  if (s.slice != i / sub_chunks || s.first_token != first || s.num_tokens != rows) {
    return BadRecord(i, "does not cover slice " + Str(i / sub_chunks) + ", tokens " + Str(first) + ".." +
                            Str(first + rows - 1));
  }
  if (s.offset > plan.body.size() || s.length > plan.body.size() - s.offset) {
    return BadRecord(i, "lies outside the body of " + Str(plan.body.size()) + " bytes");
  }
  const uint64_t w = Width(plan);
  const uint64_t tables = plan.Tables().size();
  if (uint64_t{s.plain_tables} + w > tables || uint64_t{s.delta_tables} + w > tables) {
    return BadRecord(i, "reads tables past the " + Str(tables) + " there are");
  }
  if (s.bins < 1 || s.bins > detail::kCachegenMaxBins) return BadRecord(i, "has bins " + Str(s.bins) + ", not 1..127");
  return Status::Ok();
}

}  // namespace

uint64_t CachegenOutputBytes(const CachegenPlan& plan, DType out_dtype) {
  const ChunkShape& s = plan.shape;
  return uint64_t{s.num_layers} * 2 * s.num_tokens * s.num_kv_heads * s.head_dim * DTypeBytes(out_dtype);
}

uint64_t CachegenTablesOffset(const CachegenPlan& plan) {
  return RoundUp16(plan.streams.size() * sizeof(CachegenStream));
}

uint64_t CachegenImageBytes(const CachegenPlan& plan) {
  return CachegenTablesOffset(plan) + plan.Tables().size() * sizeof(CachegenTable);
}

std::vector<std::byte> CachegenImage(const CachegenPlan& plan) {
  std::vector<std::byte> image(CachegenImageBytes(plan));
  const size_t streams = plan.streams.size() * sizeof(CachegenStream);
  const size_t tables = plan.Tables().size() * sizeof(CachegenTable);
  if (streams != 0) std::memcpy(image.data(), plan.streams.data(), streams);
  if (tables != 0) std::memcpy(image.data() + CachegenTablesOffset(plan), plan.Tables().data(), tables);
  return image;
}

uint64_t CachegenErrorBytes(const CachegenPlan& plan) { return plan.streams.size() * 4; }

uint64_t CachegenWorkspaceBytes(const CachegenPlan& plan) {
  const uint64_t anchors = plan.anchor_delta ? plan.streams.size() * uint64_t{Width(plan)} * 4 : 0;
  return detail::CachegenAnchorsOffset(plan) + anchors;
}

Status CheckCachegenDeviceChunks(std::span<const CachegenDeviceChunk> chunks) {
  for (size_t k = 0; k < chunks.size(); ++k) KVTIER_RETURN_IF_ERROR(detail::CheckCachegenDeviceChunk(chunks[k], k));
  return Status::Ok();
}

Status CachegenDeviceStatus(const CachegenPlan& plan, std::span<const std::byte> errors) {
  if (errors.size() != CachegenErrorBytes(plan)) {
    return InvalidArgument("cachegen error words of " + Str(errors.size()) + " bytes, the plan has " +
                           Str(plan.streams.size()) + " streams of 4 bytes");
  }
  for (size_t i = 0; i < plan.streams.size(); ++i) {
    uint32_t code;
    std::memcpy(&code, errors.data() + 4 * i, 4);
    KVTIER_RETURN_IF_ERROR(detail::CachegenStreamStatus(plan, static_cast<uint32_t>(i), code));
  }
  return Status::Ok();
}

namespace detail {

uint64_t CachegenAnchorsOffset(const CachegenPlan& plan) { return RoundUp16(CachegenErrorBytes(plan)); }

Status CheckCachegenPlan(const CachegenPlan& plan) {
  KVTIER_RETURN_IF_ERROR(plan.shape.Validate());
  if (plan.tokens_per_stream < 1 || plan.tokens_per_stream > 256) {
    return InvalidArgument("cachegen plan tokens_per_stream " + Str(plan.tokens_per_stream) + " is not 1..256");
  }
  const uint32_t sub_chunks = (plan.shape.num_tokens + plan.tokens_per_stream - 1) / plan.tokens_per_stream;
  const uint64_t streams = uint64_t{plan.shape.num_layers} * 2 * sub_chunks;
  if (plan.streams.size() != streams) {
    return InvalidArgument("cachegen plan has " + Str(plan.streams.size()) + " stream records, its shape needs " +
                           Str(streams));
  }
  const uint64_t tables = uint64_t{plan.shape.num_layers} * 2 * Kinds(plan) * Width(plan);
  if (plan.Tables().size() != tables) {
    return InvalidArgument("cachegen plan has " + Str(plan.Tables().size()) + " tables, its shape needs " +
                           Str(tables));
  }
  if (plan.body.data() == nullptr) return InvalidArgument("cachegen plan body is null");
  for (size_t i = 0; i < plan.streams.size(); ++i) KVTIER_RETURN_IF_ERROR(CheckRecord(plan, i, sub_chunks));
  return Status::Ok();
}

Status CheckCachegenOutput(const CachegenPlan& plan, DType out_dtype, const void* out, size_t out_bytes) {
  const size_t elem = DTypeBytes(out_dtype);
  if (elem == 0) return InvalidArgument("output dtype must be fp16, bf16 or fp32");
  if (out_bytes != CachegenOutputBytes(plan, out_dtype)) {
    return InvalidArgument("cachegen output of " + Str(out_bytes) + " bytes is not the " +
                           Str(CachegenOutputBytes(plan, out_dtype)) + " bytes its shape needs");
  }
  if (out == nullptr) return InvalidArgument("output is null");
  if (!Aligned(out, elem)) return InvalidArgument("output is not aligned to the " + Str(elem) + "-byte element");
  return Status::Ok();
}

Status CheckCachegenDeviceChunk(const CachegenDeviceChunk& c, size_t k) {
  auto bad = [k](const Status& s) { return InvalidArgument("chunk " + Str(k) + ": " + s.message()); };
  if (c.plan == nullptr) return bad(InvalidArgument("plan is null"));
  const CachegenPlan& plan = *c.plan;
  if (Status s = CheckCachegenPlan(plan); !s.ok()) return bad(s);
  if (Status s = CheckCachegenOutput(plan, c.out_dtype, c.out.data(), c.out.size()); !s.ok()) return bad(s);
  if (c.body.size() != plan.body.size() || c.body.data() == nullptr) {
    return bad(InvalidArgument("device body of " + Str(c.body.size()) + " bytes is not the plan's " +
                               Str(plan.body.size())));
  }
  const uint64_t image_bytes = c.tables.empty() ? CachegenImageBytes(plan) : CachegenTablesOffset(plan);
  if (c.image.size() != image_bytes || c.image.data() == nullptr) {
    return bad(InvalidArgument("device image of " + Str(c.image.size()) + " bytes is not the plan's " +
                               Str(image_bytes)));
  }
  const uint64_t tables_bytes = CachegenImageBytes(plan) - CachegenTablesOffset(plan);
  if (!c.tables.empty() && c.tables.size() != tables_bytes) {
    return bad(InvalidArgument("device tables of " + Str(c.tables.size()) + " bytes are not the plan's " +
                               Str(tables_bytes)));
  }
  if (!Aligned(c.tables.data(), kDeviceAlignment)) return bad(InvalidArgument("device tables are not 16-byte aligned"));
  if (c.workspace.size() < CachegenWorkspaceBytes(plan) || c.workspace.data() == nullptr) {
    return bad(InvalidArgument("workspace of " + Str(c.workspace.size()) + " bytes is below the " +
                               Str(CachegenWorkspaceBytes(plan)) + " the plan needs"));
  }
  if (!Aligned(c.image.data(), kDeviceAlignment) || !Aligned(c.workspace.data(), kDeviceAlignment)) {
    return bad(InvalidArgument("device image or workspace is not 16-byte aligned"));
  }
  return Status::Ok();
}

CachegenChunkView CachegenView(const CachegenPlan& plan, DType out_dtype, const std::byte* body,
                               const CachegenStream* streams, const CachegenTable* tables, std::byte* out) {
  CachegenChunkView v{};
  v.body = reinterpret_cast<const unsigned char*>(body);
  v.body_bytes = plan.body.size();
  v.streams = streams;
  v.tables = tables;
  v.num_tables = plan.Tables().size();
  v.out = reinterpret_cast<unsigned char*>(out);
  v.num_streams = static_cast<uint32_t>(plan.streams.size());
  v.num_slices = 2 * plan.shape.num_layers;
  v.num_tokens = plan.shape.num_tokens;
  v.width = Width(plan);
  v.out_elem_bytes = static_cast<uint32_t>(DTypeBytes(out_dtype));
  v.max_out = MaxFinite(plan.shape.dtype);
  v.out_type = ElementTypeOf(out_dtype);
  v.anchor_delta = plan.anchor_delta ? 1 : 0;
  return v;
}

CachegenChunkView DeviceChunkView(const CachegenDeviceChunk& c) {
  const CachegenPlan& plan = *c.plan;
  std::byte* workspace = c.workspace.data();
  const std::byte* image = c.image.data();
  const std::byte* tables = c.tables.empty() ? image + CachegenTablesOffset(plan) : c.tables.data();
  CachegenChunkView v = CachegenView(plan, c.out_dtype, c.body.data(), reinterpret_cast<const CachegenStream*>(image),
                                     reinterpret_cast<const CachegenTable*>(tables), c.out.data());
  v.errors = reinterpret_cast<uint32_t*>(workspace);
  v.anchors = reinterpret_cast<float*>(workspace + CachegenAnchorsOffset(plan));
  return v;
}

Status CachegenStreamStatus(const CachegenPlan& plan, uint32_t i, uint32_t code) {
  namespace ci = codec::internal;
  const uint32_t index = plan.streams[i].index;
  switch (code) {
    case kCachegenStreamOk: return Status::Ok();
    case kCachegenStreamTooShort: return ci::CorruptStream(index, ci::kStreamTooShort);
    case kCachegenStreamBadScale: return ci::CorruptStream(index, ci::kBadRowScale);
    case kCachegenStreamBadStates: return ci::CorruptStream(index, ci::kBadCoderStates);
    case kCachegenStreamCorrupt: return ci::CorruptStream(index, ci::kCorruptEntropy);
    case kCachegenStreamUnfinished: return ci::CorruptStream(index, ci::kUnfinishedEntropy);
    case kCachegenStreamBadRecord:
      return InvalidArgument("cachegen stream " + Str(index) + ": the device image's record does not fit the chunk");
    default:
      return Internal("cachegen stream " + Str(index) + ": unknown error code " + Str(code));
  }
}

}  // namespace detail
}  // namespace kvtier::gpu
