// GpuChannel's state, made by Client::OpenGpuChannel (client.cc) through State::Open (gpu_channel.cc).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "kvtier/client/gpu_channel.h"
#include "kvtier/gpu/peer_link.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier {

// Cancels a stream whose current exchange outlives its deadline: a synchronous stream has no deadline per
// message, and the channel's has none at all (it lives as long as its owner). One thread per channel.
class StreamWatchdog {
 public:
  explicit StreamWatchdog(grpc::ClientContext* ctx);
  ~StreamWatchdog();
  StreamWatchdog(const StreamWatchdog&) = delete;
  StreamWatchdog& operator=(const StreamWatchdog&) = delete;

  void Arm(std::chrono::milliseconds budget);
  void Disarm();
  bool fired() const;

 private:
  void Run();

  grpc::ClientContext* ctx_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  bool armed_ = false;
  bool fired_ = false;
  bool stop_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::thread thread_;  // last: started once the members above exist
};

struct GpuChannel::State {
  grpc::ClientContext ctx;  // no deadline: the stream lives as long as the channel (the watchdog bounds calls)
  std::unique_ptr<grpc::ClientReaderWriter<v1::GpuChannelRequest, v1::GpuChannelResponse>> stream;
  std::unique_ptr<gpu::PeerLink> link;
  gpu::PeerLinkKind kind = gpu::PeerLinkKind::kNccl;
  std::string server_device;
  std::chrono::milliseconds link_timeout{0};  // joining the link, and each get's receives
  std::chrono::milliseconds call_timeout{0};  // each exchange on the stream (ClientOptions::deadline)
  Status broken;  // the first error; the channel answers it from then on
  v1::GpuChannelRequest request;    // reused by each get
  v1::GpuChannelResponse response;  // reused by each get
  std::unique_ptr<StreamWatchdog> watchdog;  // destroyed first (declared last): it may cancel ctx

  // Makes the link id (proving this process can join), opens the stream on `stub`, and joins the link as rank
  // 1 once the server accepted (kvstore/GPU_TIER.md "NCCL channel").
  static Result<std::unique_ptr<State>> Open(v1::KvTier::Stub& stub, const std::string& bearer_token,
                                             const v1::RequestContext& context, gpu::PeerLinkKind kind,
                                             std::chrono::milliseconds link_timeout,
                                             std::chrono::milliseconds call_timeout);
  // One exchange: writes `request` (if any) and reads the next response, within call_timeout. The error says
  // why the stream ended when it did.
  Status Exchange(const char* when);
  // Ends the stream: cancelled when broken (the server may be waiting on the link), else closed cleanly.
  ~State();
};

}  // namespace kvtier
