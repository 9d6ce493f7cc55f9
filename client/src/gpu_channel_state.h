// GpuChannel's state, shared by Client::OpenGpuChannel (client.cc), which makes it, and gpu_channel.cc.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "kvtier/client/gpu_channel.h"
#include "kvtier/gpu/peer_link.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier {

struct GpuChannel::State {
  grpc::ClientContext ctx;  // no deadline: the stream lives as long as the channel
  std::unique_ptr<grpc::ClientReaderWriter<v1::GpuChannelRequest, v1::GpuChannelResponse>> stream;
  std::unique_ptr<gpu::PeerLink> link;
  gpu::PeerLinkKind kind = gpu::PeerLinkKind::kNccl;
  std::string server_device;
  std::chrono::milliseconds timeout{0};
  Status broken;  // the first error; the channel answers it from then on
  v1::GpuChannelRequest request;    // reused by each get
  v1::GpuChannelResponse response;  // reused by each get

  // Opens the stream on `stub`, joins the link as rank 1 (kvstore/GPU_TIER.md "NCCL channel").
  static Result<std::unique_ptr<State>> Open(v1::KvTier::Stub& stub, const std::string& bearer_token,
                                             const v1::RequestContext& context, gpu::PeerLinkKind kind,
                                             std::chrono::milliseconds timeout);
  // Ends the stream: cancelled when broken (the server may be waiting on the link), else closed cleanly.
  ~State();
};

}  // namespace kvtier
