#include "kvtier/client/gpu_channel.h"

#include <cstring>
#include <utility>

#include "gpu_channel_state.h"
#include "kvtier/api/convert.h"

namespace kvtier {
namespace {

v1::GpuLink WireLink(gpu::PeerLinkKind kind) {
  return kind == gpu::PeerLinkKind::kLoopback ? v1::GPU_LINK_LOOPBACK : v1::GPU_LINK_NCCL;
}

// Why the stream ended: its status, or, when the server closed it cleanly, that it did.
Status Ended(grpc::ClientReaderWriter<v1::GpuChannelRequest, v1::GpuChannelResponse>& stream, const char* when) {
  Status s = FromGrpc(stream.Finish());
  if (s.ok()) return Unavailable(std::string("gpu channel: the server closed the stream ") + when);
  return s;
}

}  // namespace

Result<std::unique_ptr<GpuChannel::State>> GpuChannel::State::Open(v1::KvTier::Stub& stub,
                                                                   const std::string& bearer_token,
                                                                   const v1::RequestContext& context,
                                                                   gpu::PeerLinkKind kind,
                                                                   std::chrono::milliseconds timeout) {
  auto state = std::make_unique<State>();
  state->kind = kind;
  state->timeout = timeout;
  if (!bearer_token.empty()) state->ctx.AddMetadata("authorization", "Bearer " + bearer_token);
  state->stream = stub.GpuChannel(&state->ctx);
  v1::GpuChannelOpen* open = state->request.mutable_open();
  *open->mutable_context() = context;
  open->set_link(WireLink(kind));
  if (!state->stream->Write(state->request) || !state->stream->Read(&state->response)) {
    Status s = Ended(*state->stream, "before the link was offered");
    state->stream.reset();  // finished
    return s;
  }
  if (!state->response.has_opened() || state->response.opened().link() != WireLink(kind) ||
      state->response.opened().link_id().size() != gpu::PeerLinkId{}.bytes.size()) {
    state->broken = Internal("gpu channel: the server's opening does not offer the link asked for");
    return state->broken;
  }
  gpu::PeerLinkId id;
  id.kind = kind;
  std::memcpy(id.bytes.data(), state->response.opened().link_id().data(), id.bytes.size());
  state->server_device = state->response.opened().device();
  auto link = gpu::JoinPeerLink(id, /*rank=*/1, /*device=*/-1, timeout);
  if (!link.ok()) {
    state->broken = link.status();
    return Unavailable("gpu channel: " + link.status().message());
  }
  state->link = std::move(link).value();
  state->request.Clear();
  return state;
}

GpuChannel::State::~State() {
  if (stream == nullptr) return;
  if (broken.ok()) {
    stream->WritesDone();
  } else {
    ctx.TryCancel();
  }
  (void)stream->Finish();
}

GpuChannel::GpuChannel(std::unique_ptr<State> state) : state_(std::move(state)) {}
GpuChannel::~GpuChannel() = default;

gpu::PeerLinkKind GpuChannel::link_kind() const { return state_->kind; }
const std::string& GpuChannel::server_device() const { return state_->server_device; }

Status GpuChannel::Break(Status status) {
  state_->broken = status;
  return status;
}

Result<GpuChannel::Answer> GpuChannel::Get(std::span<const ChunkKey> keys, std::span<std::byte* const> dests,
                                           uint64_t max_payload_bytes, gpu::StreamHandle after) {
  State& s = *state_;
  if (!s.broken.ok()) return s.broken;
  if (dests.size() < keys.size()) {
    return InvalidArgument("GpuChannel::Get: " + std::to_string(dests.size()) + " destinations for " +
                           std::to_string(keys.size()) + " keys");
  }
  v1::GpuChannelGet* get = s.request.mutable_get();
  get->clear_keys();
  for (const ChunkKey& key : keys) get->add_keys(KeyToWire(key));
  get->set_max_payload_bytes(max_payload_bytes);
  if (!s.stream->Write(s.request) || !s.stream->Read(&s.response)) {
    Status ended = Ended(*s.stream, "during a get");
    s.stream.reset();
    return Break(ended);
  }
  if (!s.response.has_answer()) return Break(Internal("gpu channel: the server answered a get with no answer"));
  const v1::GpuChannelAnswer& answer = s.response.answer();
  if (static_cast<size_t>(answer.sent_size()) > keys.size()) {
    return Break(Internal("gpu channel: the server sends " + std::to_string(answer.sent_size()) + " chunks for " +
                          std::to_string(keys.size()) + " keys"));
  }
  Answer out;
  out.stopped_at_miss = answer.stopped_at_miss();
  out.received.resize(static_cast<size_t>(answer.sent_size()));
  for (size_t i = 0; i < out.received.size(); ++i) {
    const v1::GpuChannelChunk& c = answer.sent(static_cast<int>(i));
    if (c.payload_bytes() > max_payload_bytes) {
      // The server would send more than the buffer holds: nothing is received, the link is out of step.
      return Break(Internal("gpu channel: chunk " + std::to_string(i) + " has " + std::to_string(c.payload_bytes()) +
                            " bytes, more than the " + std::to_string(max_payload_bytes) + " asked for"));
    }
    out.received[i] = GetResult{true, c.payload_bytes(), c.num_tokens(), c.base_position(), v1::TIER_GPU, v1::CODEC_RAW};
  }
  if (out.received.empty()) return out;
  Status received = s.link->After(after);
  for (size_t i = 0; i < out.received.size() && received.ok(); ++i) {
    received = s.link->Recv(dests[i], out.received[i].bytes);
  }
  if (received.ok()) received = s.link->Wait(s.timeout);
  if (!received.ok()) return Break(Unavailable("gpu channel: receiving over the link failed: " + received.message()));
  return out;
}

}  // namespace kvtier
