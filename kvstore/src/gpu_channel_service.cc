// KvTier.GpuChannel: GPU-tier chunks sent device to device to a client on another GPU over a peer link (NCCL),
// the stream carrying the link id and, per get, which chunks follow (kvstore/GPU_TIER.md "NCCL channel").
//
// One synchronous thread serves a channel for its life. A get holds each answered chunk (its reference and
// its GPU copy, HoldGpuCopy) until the link's Wait confirmed the sends, so nothing is evicted or freed under
// a send in flight. A link that fails or times out ends the channel (UNAVAILABLE): the client falls back to
// gRPC gets.
#include <string>
#include <utility>
#include <vector>

#include "kvtier/api/convert.h"
#include "kvtier/kvstore/log.h"
#include "kvtier/kvstore/service.h"
#include "wire_keys.h"

namespace kvtier {
namespace {

Result<gpu::PeerLinkKind> LinkKindOf(v1::GpuLink link) {
  switch (link) {
    case v1::GPU_LINK_NCCL:
      return gpu::PeerLinkKind::kNccl;
    case v1::GPU_LINK_LOOPBACK:
      return gpu::PeerLinkKind::kLoopback;
    default:
      return InvalidArgument("gpu channel: open.link must be GPU_LINK_NCCL or GPU_LINK_LOOPBACK");
  }
}

// A slot among the server's max_gpu_channels, given back when the channel ends.
class ChannelSlot {
 public:
  explicit ChannelSlot(std::atomic<uint32_t>* open) : open_(open) {}
  ~ChannelSlot() {
    if (taken_) open_->fetch_sub(1, std::memory_order_relaxed);
  }
  Status Take(uint32_t max) {
    if (open_->fetch_add(1, std::memory_order_relaxed) >= max) {
      open_->fetch_sub(1, std::memory_order_relaxed);
      return ResourceExhausted("gpu channel: " + std::to_string(max) +
                               " channels are open already (gpu_tier.max_channels)");
    }
    taken_ = true;
    return Status::Ok();
  }

 private:
  std::atomic<uint32_t>* open_;
  bool taken_ = false;
};

// The chunks of one answer, held (reference and GPU copy) until their sends are confirmed.
class HeldCopies {
 public:
  explicit HeldCopies(Store* store) : store_(store) {}
  ~HeldCopies() {
    for (const Held& h : held_) store_->ReleaseGpuCopy(h.ref);
  }
  HeldCopies(const HeldCopies&) = delete;
  HeldCopies& operator=(const HeldCopies&) = delete;

  // True when `ref`'s GPU copy is now held.
  bool Hold(ChunkRef ref) {
    auto offset = store_->HoldGpuCopy(ref);
    if (!offset) return false;
    held_.push_back({std::move(ref), *offset});
    return true;
  }

  struct Held {
    ChunkRef ref;
    uint64_t offset = 0;  // the payload's offset in the GPU arena
  };
  const std::vector<Held>& held() const { return held_; }

 private:
  Store* store_;
  std::vector<Held> held_;
};

}  // namespace

grpc::Status KvTierService::GpuChannel(grpc::ServerContext* ctx, GpuChannelStream* stream) {
  // Not timed as a whole: a channel lives as long as its client. Its open and each get are (Observe).
  ChannelSlot slot(&gpu_channels_);
  Status s = slot.Take(options_.max_gpu_channels);
  if (s.ok()) s = ServeGpuChannel(*ctx, *stream);
  // A link that failed is worth an operator's attention; a refusal (no GPU tier, a bad request) is the
  // client's to handle and would flood the log, as every transfer of a worker without NCCL asks once.
  if (s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kInternal) {
    KVTIER_LOG(kWarning) << "gpu channel from " << ctx->peer() << " ended: " << s.ToString();
  } else if (!s.ok()) {
    KVTIER_LOG(kDebug) << "gpu channel from " << ctx->peer() << " refused: " << s.ToString();
  }
  return ToGrpc(s);
}

Status KvTierService::ServeGpuChannel(grpc::ServerContext& ctx, GpuChannelStream& stream) {
  v1::GpuChannelRequest request;
  if (!stream.Read(&request)) return Status::Ok();  // closed before it opened
  auto start = std::chrono::steady_clock::now();
  Scope scope;
  auto link = OpenGpuChannel(ctx, request, stream, &scope);
  Observe(Op::kGpuChannelOpen, start, link.status());
  if (!link.ok()) return link.status();
  while (stream.Read(&request)) {
    start = std::chrono::steady_clock::now();
    const Status s = request.has_get() ? AnswerGpuGet(scope, request.get(), stream, **link)
                                       : InvalidArgument("gpu channel: only get may follow open");
    Observe(Op::kGpuChannelGet, start, s);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Result<std::unique_ptr<gpu::PeerLink>> KvTierService::OpenGpuChannel(grpc::ServerContext& ctx,
                                                                     const v1::GpuChannelRequest& first,
                                                                     GpuChannelStream& stream, Scope* scope) {
  if (!first.has_open()) return InvalidArgument("gpu channel: the first message must be open");
  const v1::GpuChannelOpen& open = first.open();
  auto kind = LinkKindOf(open.link());
  if (!kind.ok()) return kind.status();
  auto resolved = ScopeOf(ctx, open.context(), Access::kRead, /*for_write=*/false);
  if (!resolved.ok()) return resolved.status();
  *scope = std::move(resolved).value();
  auto info = store_->GpuLink();
  if (!info.ok()) return FailedPrecondition("gpu channel: " + info.status().message());
  if (info->kind != *kind) {
    return FailedPrecondition(std::string("gpu channel: this server's GPU tier sends over ") +
                              gpu::PeerLinkKindName(info->kind) + ", not " + gpu::PeerLinkKindName(*kind));
  }
  auto id = gpu::NewPeerLinkId(*kind);
  if (!id.ok()) return Unavailable("gpu channel: no link id: " + id.status().message());
  v1::GpuChannelResponse response;
  v1::GpuChannelOpened* opened = response.mutable_opened();
  opened->set_link(open.link());
  opened->set_link_id(reinterpret_cast<const char*>(id->bytes.data()), id->bytes.size());
  opened->set_device(info->device_name);
  if (!stream.Write(response)) return Unavailable("gpu channel: the client went away before the link was joined");
  auto link = gpu::JoinPeerLink(*id, /*rank=*/0, info->device, std::chrono::milliseconds(options_.gpu_link_timeout_ms));
  if (!link.ok()) return Unavailable("gpu channel: " + link.status().message());
  return link;
}

Status KvTierService::AnswerGpuGet(const Scope& scope, const v1::GpuChannelGet& get, GpuChannelStream& stream,
                                   gpu::PeerLink& link) {
  auto keys = KeysOf(get.keys());
  if (!keys.ok()) return keys.status();
  KVTIER_RETURN_IF_ERROR(store_->CheckBatch(keys->size()));
  if (get.max_payload_bytes() == 0) return InvalidArgument("gpu channel: get.max_payload_bytes must be > 0");
  // The leading chunks the link carries: raw hits with a GPU copy that fit the client's buffers.
  HeldCopies held(store_);
  v1::GpuChannelResponse response;
  v1::GpuChannelAnswer* answer = response.mutable_answer();
  for (const ChunkKey& key : *keys) {
    auto ref = store_->Get(scope, key);
    if (!ref.ok()) return ref.status();
    if (!*ref) {
      answer->set_stopped_at_miss(true);
      break;
    }
    const ChunkEntry& e = ref->entry();
    if (e.codec != static_cast<uint8_t>(CodecId::kRaw) || e.payload_bytes > get.max_payload_bytes()) break;
    const uint64_t bytes = e.payload_bytes;
    const uint32_t tokens = e.num_tokens;
    const uint32_t base_position = e.base_position;
    if (!held.Hold(std::move(ref).value())) break;
    v1::GpuChannelChunk* chunk = answer->add_sent();
    chunk->set_payload_bytes(bytes);
    chunk->set_num_tokens(tokens);
    chunk->set_base_position(base_position);
  }
  if (!stream.Write(response)) return Unavailable("gpu channel: the client went away before the answer");
  // The client posts its receives once it read the answer; the sends match them in order.
  Status sent;
  for (const HeldCopies::Held& h : held.held()) {
    sent = store_->SendGpuCopy(link, h.offset, h.ref.entry().payload_bytes);
    if (!sent.ok()) break;
  }
  if (sent.ok()) sent = link.Wait(std::chrono::milliseconds(options_.gpu_link_timeout_ms));
  if (!sent.ok()) return Unavailable("gpu channel: sending over the link failed: " + sent.message());
  if (metrics_ != nullptr) {
    for (const HeldCopies::Held& h : held.held()) {
      metrics_->AddCodecBytes(CodecDirection::kOut, h.ref.entry().codec, h.ref.entry().payload_bytes);
    }
  }
  return Status::Ok();
}

}  // namespace kvtier
