// KvTier.GpuChannel: GPU-tier chunks sent device to device to a client on another GPU over a peer link (NCCL),
// the stream carrying the link id and, per get, which chunks follow (kvstore/GPU_TIER.md "NCCL channel").
//
// One synchronous thread serves a channel for its life. A get holds each answered chunk (its reference and
// its GPU copy, Store::GetGpuCopy) until the link's Wait confirmed the sends, or the link was aborted, so
// nothing is evicted or freed under a send in flight. A link that fails or times out ends the channel
// (UNAVAILABLE): the client falls back to gRPC gets.
#include <cstring>
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

// The chunks of one answer, held (reference and GPU copy) until their sends are confirmed or the link is
// aborted: nothing may evict or overwrite a GPU copy that a send may still read.
class HeldCopies {
 public:
  explicit HeldCopies(Store* store) : store_(store) {}
  ~HeldCopies() {
    for (const Store::GpuCopyHit& h : held_) store_->ReleaseGpuCopy(h.ref);
  }
  HeldCopies(const HeldCopies&) = delete;
  HeldCopies& operator=(const HeldCopies&) = delete;

  void Adopt(Store::GpuCopyHit hit) { held_.push_back(std::move(hit)); }
  const std::vector<Store::GpuCopyHit>& held() const { return held_; }

 private:
  Store* store_;
  std::vector<Store::GpuCopyHit> held_;
};

}  // namespace

grpc::Status KvTierService::GpuChannel(grpc::ServerContext* ctx, GpuChannelStream* stream) {
  // Not timed as a whole: a channel lives as long as its client. Its open and each get are (Observe).
  Status s = ServeGpuChannel(*ctx, *stream);
  // A link that failed is worth an operator's attention; a refusal (no GPU tier, a bad request) is the
  // client's to handle and would flood the log.
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
  // A slot is taken only for a valid, authorized open: nobody holds one without a link on the way.
  ChannelSlot slot(&gpu_channels_);
  Scope scope;
  gpu::PeerLinkId id;
  Store::GpuLinkInfo tier;
  Status opening = CheckGpuChannelOpen(ctx, request, &scope, &id, &tier);
  if (opening.ok()) opening = slot.Take(options_.max_gpu_channels);
  std::unique_ptr<gpu::PeerLink> link;
  if (opening.ok()) {
    auto joined = JoinGpuChannel(ctx, request, id, tier, stream);
    opening = joined.status();
    if (joined.ok()) link = std::move(joined).value();
  }
  Observe(Op::kGpuChannelOpen, start, opening);
  KVTIER_RETURN_IF_ERROR(opening);
  while (stream.Read(&request)) {
    start = std::chrono::steady_clock::now();
    const Status s = request.has_get() ? AnswerGpuGet(scope, request.get(), stream, *link)
                                       : InvalidArgument("gpu channel: only get may follow open");
    Observe(Op::kGpuChannelGet, start, s);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status KvTierService::CheckGpuChannelOpen(grpc::ServerContext& ctx, const v1::GpuChannelRequest& first, Scope* scope,
                                          gpu::PeerLinkId* id, Store::GpuLinkInfo* tier) {
  if (!first.has_open()) return InvalidArgument("gpu channel: the first message must be open");
  const v1::GpuChannelOpen& open = first.open();
  auto kind = LinkKindOf(open.link());
  if (!kind.ok()) return kind.status();
  if (open.link_id().size() != id->bytes.size()) {
    return InvalidArgument("gpu channel: open.link_id has " + std::to_string(open.link_id().size()) +
                           " bytes, not " + std::to_string(id->bytes.size()));
  }
  auto resolved = ScopeOf(ctx, open.context(), Access::kRead, /*for_write=*/false);
  if (!resolved.ok()) return resolved.status();
  *scope = std::move(resolved).value();
  auto info = store_->GpuLink();
  if (!info.ok()) return FailedPrecondition("gpu channel: " + info.status().message());
  if (info->kind != *kind) {
    return FailedPrecondition(std::string("gpu channel: this server's GPU tier sends over ") +
                              gpu::PeerLinkKindName(info->kind) + ", not " + gpu::PeerLinkKindName(*kind));
  }
  id->kind = *kind;
  std::memcpy(id->bytes.data(), open.link_id().data(), id->bytes.size());
  *tier = std::move(info).value();
  return Status::Ok();
}

Result<std::unique_ptr<gpu::PeerLink>> KvTierService::JoinGpuChannel(grpc::ServerContext& ctx,
                                                                     const v1::GpuChannelRequest& first,
                                                                     const gpu::PeerLinkId& id,
                                                                     const Store::GpuLinkInfo& tier,
                                                                     GpuChannelStream& stream) {
  v1::GpuChannelResponse response;
  v1::GpuChannelOpened* opened = response.mutable_opened();
  opened->set_link(first.open().link());
  opened->set_device(tier.device_name);
  if (!stream.Write(response)) return Unavailable("gpu channel: the client went away before the link was joined");
  // A client that goes away (cancels, or its connection dies) ends the join at once, not after the timeout.
  auto link = gpu::JoinPeerLink(id, /*rank=*/0, tier.device, std::chrono::milliseconds(options_.gpu_link_timeout_ms),
                                [&ctx] { return ctx.IsCancelled(); });
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
    auto hit = store_->GetGpuCopy(scope, key);
    if (!hit.ok()) return hit.status();
    if (!hit->found) {
      answer->set_stopped_at_miss(true);
      break;
    }
    if (!hit->ref) break;  // no GPU copy: the client reads it over gRPC
    const ChunkEntry& e = hit->ref.entry();
    const bool sendable = e.codec == static_cast<uint8_t>(CodecId::kRaw) && e.payload_bytes <= get.max_payload_bytes();
    v1::GpuChannelChunk chunk;
    chunk.set_payload_bytes(e.payload_bytes);
    chunk.set_num_tokens(e.num_tokens);
    chunk.set_base_position(e.base_position);
    held.Adopt(std::move(hit).value());  // released with the others, sendable or not
    if (!sendable) break;
    *answer->add_sent() = chunk;
  }
  if (!stream.Write(response)) return Unavailable("gpu channel: the client went away before the answer");
  // The client posts its receives once it read the answer; the sends match them in order.
  const int sends = answer->sent_size();
  Status sent;
  for (int i = 0; i < sends && sent.ok(); ++i) {
    const Store::GpuCopyHit& h = held.held()[static_cast<size_t>(i)];
    sent = store_->SendGpuCopy(link, h.offset, h.ref.entry().payload_bytes);
  }
  if (sent.ok()) sent = link.Wait(std::chrono::milliseconds(options_.gpu_link_timeout_ms));
  if (!sent.ok()) {
    link.Abort();  // sends already queued end before the holds are released (HeldCopies' destructor)
    return Unavailable("gpu channel: sending over the link failed: " + sent.message());
  }
  if (metrics_ != nullptr) {
    for (int i = 0; i < sends; ++i) {
      const ChunkEntry& e = held.held()[static_cast<size_t>(i)].ref.entry();
      metrics_->AddCodecBytes(CodecDirection::kOut, e.codec, e.payload_bytes);
    }
  }
  return Status::Ok();
}

}  // namespace kvtier
