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

}  // namespace

StreamWatchdog::StreamWatchdog(grpc::ClientContext* ctx) : ctx_(ctx), thread_([this] { Run(); }) {}

StreamWatchdog::~StreamWatchdog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void StreamWatchdog::Arm(std::chrono::milliseconds budget) {
  {
    std::lock_guard lock(mu_);
    armed_ = true;
    deadline_ = std::chrono::steady_clock::now() + budget;
  }
  changed_.notify_all();
}

void StreamWatchdog::Disarm() {
  std::lock_guard lock(mu_);
  armed_ = false;
}

bool StreamWatchdog::fired() const {
  std::lock_guard lock(mu_);
  return fired_;
}

void StreamWatchdog::Run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (!armed_) {
      changed_.wait(lock);
      continue;
    }
    const auto deadline = deadline_;
    changed_.wait_until(lock, deadline);
    if (!stop_ && armed_ && deadline_ == deadline && std::chrono::steady_clock::now() >= deadline) {
      fired_ = true;
      armed_ = false;
      ctx_->TryCancel();
    }
  }
}

Result<std::unique_ptr<GpuChannel::State>> GpuChannel::State::Open(v1::KvTier::Stub& stub,
                                                                   const std::string& bearer_token,
                                                                   const v1::RequestContext& context,
                                                                   gpu::PeerLinkKind kind,
                                                                   std::chrono::milliseconds link_timeout,
                                                                   std::chrono::milliseconds call_timeout) {
  // Making the id needs what joining needs (NCCL, a GPU): a process that cannot join never asks the server.
  auto id = gpu::NewPeerLinkId(kind);
  if (!id.ok()) {
    return FailedPrecondition(std::string("gpu channel: this process cannot make a ") + gpu::PeerLinkKindName(kind) +
                              " link: " + id.status().message());
  }
  auto state = std::make_unique<State>();
  state->kind = kind;
  state->link_timeout = link_timeout;
  state->call_timeout = call_timeout;
  if (!bearer_token.empty()) state->ctx.AddMetadata("authorization", "Bearer " + bearer_token);
  state->watchdog = std::make_unique<StreamWatchdog>(&state->ctx);
  state->stream = stub.GpuChannel(&state->ctx);
  v1::GpuChannelOpen* open = state->request.mutable_open();
  *open->mutable_context() = context;
  open->set_link(WireLink(kind));
  open->set_link_id(reinterpret_cast<const char*>(id->bytes.data()), id->bytes.size());
  KVTIER_RETURN_IF_ERROR(state->Exchange("before the link was joined"));
  if (!state->response.has_opened() || state->response.opened().link() != WireLink(kind)) {
    state->broken = Internal("gpu channel: the server's opening does not offer the link asked for");
    return state->broken;
  }
  state->server_device = state->response.opened().device();
  auto link = gpu::JoinPeerLink(*id, /*rank=*/1, /*device=*/-1, link_timeout);
  if (!link.ok()) {
    state->broken = link.status();
    return Unavailable("gpu channel: " + link.status().message());
  }
  state->link = std::move(link).value();
  state->request.Clear();
  return state;
}

Status GpuChannel::State::Exchange(const char* when) {
  watchdog->Arm(call_timeout);
  const bool answered = stream->Write(request) && stream->Read(&response);
  watchdog->Disarm();
  if (answered) return Status::Ok();
  Status ended = FromGrpc(stream->Finish());
  stream.reset();  // finished
  if (watchdog->fired()) {
    ended = Status(StatusCode::kDeadlineExceeded, "gpu channel: the server did not answer within " +
                                                      std::to_string(call_timeout.count()) + " ms " + when);
  } else if (ended.ok()) {
    ended = Unavailable(std::string("gpu channel: the server closed the stream ") + when);
  }
  broken = ended;
  return ended;
}

GpuChannel::State::~State() {
  if (stream == nullptr) return;
  if (broken.ok()) {
    stream->WritesDone();
    watchdog->Arm(call_timeout);  // a server that does not end the stream is cancelled
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
  KVTIER_RETURN_IF_ERROR(s.Exchange("during a get"));
  // From here the server may be sending: a protocol error aborts the link too.
  auto refuse = [&](Status error) {
    s.link->Abort();
    return Break(std::move(error));
  };
  if (!s.response.has_answer()) return refuse(Internal("gpu channel: the server answered a get with no answer"));
  const v1::GpuChannelAnswer& answer = s.response.answer();
  if (static_cast<size_t>(answer.sent_size()) > keys.size()) {
    return refuse(Internal("gpu channel: the server sends " + std::to_string(answer.sent_size()) + " chunks for " +
                          std::to_string(keys.size()) + " keys"));
  }
  Answer out;
  out.stopped_at_miss = answer.stopped_at_miss();
  out.received.resize(static_cast<size_t>(answer.sent_size()));
  for (size_t i = 0; i < out.received.size(); ++i) {
    const v1::GpuChannelChunk& c = answer.sent(static_cast<int>(i));
    if (c.payload_bytes() > max_payload_bytes) {
      // The server would send more than the buffer holds: nothing is received, the link is out of step.
      return refuse(Internal("gpu channel: chunk " + std::to_string(i) + " has " + std::to_string(c.payload_bytes()) +
                            " bytes, more than the " + std::to_string(max_payload_bytes) + " asked for"));
    }
    out.received[i] = GetResult{true, c.payload_bytes(), c.num_tokens(), c.base_position(), v1::TIER_GPU, v1::CODEC_RAW};
  }
  if (out.received.empty()) return out;
  Status received = s.link->After(after);
  for (size_t i = 0; i < out.received.size() && received.ok(); ++i) {
    received = s.link->Recv(dests[i], out.received[i].bytes);
  }
  if (received.ok()) received = s.link->Wait(s.link_timeout);
  // Aborted on failure: nothing may still write into the caller's buffers once this returns.
  if (!received.ok()) return refuse(Unavailable("gpu channel: receiving over the link failed: " + received.message()));
  return out;
}

}  // namespace kvtier
