// KvTierService: the gRPC face of a Store (kvtier.v1.KvTier). It validates wire-level input (key
// lengths, frame sizes, stream order), maps kvtier::Status to gRPC codes, streams payloads in frames,
// and records request metrics. All policy lives in the Store. Thread-safe: gRPC calls it from many
// threads; its only mutable state is the count of open GPU channels (an atomic).
//
// Get is a raw callback method: its data frames are gRPC slices that point into the host arena (the
// chunk is held by a reference until gRPC releases the slice), so payload bytes are not copied in user
// space on the way out. The other methods use the synchronous API. GpuChannel (gpu_channel_service.cc) holds
// one synchronous thread per open channel, bounded by max_gpu_channels.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "kvtier/kvstore/auth.h"
#include "kvtier/kvstore/metrics.h"
#include "kvtier/kvstore/store.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier {

struct ServiceOptions {
  uint64_t max_frame_bytes = 1ull << 20;  // largest data frame accepted in a put, and sent in a get
  uint32_t max_gpu_channels = 16;         // GpuChannel streams open at once; more are RESOURCE_EXHAUSTED
  // How long a GPU channel waits for its peer: to join the link, and for each answer's sends to complete
  // (a client that died mid-receive ends the channel after this, the link aborted).
  uint32_t gpu_link_timeout_ms = 30000;
  Status Validate() const;
};

class KvTierService final : public v1::KvTier::WithRawCallbackMethod_Get<v1::KvTier::Service> {
 public:
  // `auth` (owned by the caller, may be null = no authentication) checks every call's bearer token.
  KvTierService(Store* store, Metrics* metrics, ServiceOptions options, const Authorizer* auth = nullptr);

  grpc::Status Put(grpc::ServerContext* ctx, grpc::ServerReader<v1::PutRequest>* reader,
                   v1::PutResponse* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Get(grpc::CallbackServerContext* ctx,
                                                  const grpc::ByteBuffer* request) override;
  grpc::Status Lookup(grpc::ServerContext* ctx, const v1::LookupRequest* request,
                      v1::LookupResponse* response) override;
  grpc::Status Exists(grpc::ServerContext* ctx, const v1::ExistsRequest* request,
                      v1::ExistsResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* request,
                      v1::DeleteResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const v1::StatsRequest* request,
                     v1::StatsResponse* response) override;
  grpc::Status PutProfile(grpc::ServerContext* ctx, const v1::PutProfileRequest* request,
                          v1::PutProfileResponse* response) override;
  grpc::Status GetProfile(grpc::ServerContext* ctx, const v1::GetProfileRequest* request,
                          v1::GetProfileResponse* response) override;
  grpc::Status LocalInfo(grpc::ServerContext* ctx, const v1::LocalInfoRequest* request,
                         v1::LocalInfoResponse* response) override;
  grpc::Status GpuChannel(grpc::ServerContext* ctx,
                          grpc::ServerReaderWriter<v1::GpuChannelResponse, v1::GpuChannelRequest>* stream) override;
  // What LocalInfo answers; set before the server starts serving (empty: no same-host path).
  void SetLocalInfo(v1::LocalInfoResponse info) { local_info_ = std::move(info); }

 private:
  template <typename Fn>
  grpc::Status Timed(Op op, Fn&& fn);
  // Checks the caller's token for the namespace and `access`, then resolves the scope; `for_write`
  // registers a namespace or fingerprint seen for the first time.
  Result<Scope> ScopeOf(const grpc::ServerContextBase& ctx, const v1::RequestContext& context, Access access,
                        bool for_write);
  Status DoPut(grpc::ServerContext* ctx, grpc::ServerReader<v1::PutRequest>* reader, v1::PutResponse* response);
  // Validates a get and takes a reference on every chunk (misses are empty refs).
  struct AcquiredGet {
    std::vector<ChunkRef> refs;
    codec::ProfileResolver decode_profiles;  // set when the client asked for raw payloads
    std::vector<v1::ChunkHeader> extras;     // per key: variant fields merged into a hit's header
  };
  Result<AcquiredGet> AcquireForGet(const grpc::ServerContextBase& ctx, const grpc::ByteBuffer& request);
  // The GPU channel's steps (gpu_channel_service.cc).
  using GpuChannelStream = grpc::ServerReaderWriter<v1::GpuChannelResponse, v1::GpuChannelRequest>;
  Status ServeGpuChannel(grpc::ServerContext& ctx, GpuChannelStream& stream);
  Status CheckGpuChannelOpen(grpc::ServerContext& ctx, const v1::GpuChannelRequest& first, Scope* scope,
                             gpu::PeerLinkId* id, Store::GpuLinkInfo* tier);
  Result<std::unique_ptr<gpu::PeerLink>> JoinGpuChannel(grpc::ServerContext& ctx, const v1::GpuChannelRequest& first,
                                                        const gpu::PeerLinkId& id, const Store::GpuLinkInfo& tier,
                                                        GpuChannelStream& stream);
  Status AnswerGpuGet(const Scope& scope, const v1::GpuChannelGet& get, GpuChannelStream& stream,
                      gpu::PeerLink& link);
  void Observe(Op op, std::chrono::steady_clock::time_point start, const Status& status);

  Store* const store_;
  Metrics* const metrics_;
  const ServiceOptions options_;
  const Authorizer* const auth_;
  const std::chrono::steady_clock::time_point started_;
  v1::LocalInfoResponse local_info_;
  std::atomic<uint32_t> gpu_channels_{0};
};

}  // namespace kvtier
