// LocalPath: how a Client uses the same-host shared-memory path (kvstore/SHM.md) by itself.
//
// It asks the server (LocalInfo, over gRPC) for its socket, uses it only when the server runs on this host
// (same boot id) and answers on the socket as the same instance, and keeps a few idle connections. Gets
// copy (or decode) hits straight from the mapped arena into the caller's buffers and then release the
// leases (Visit hands the leased bytes to a caller's sink instead, for copies that bypass this process, such as
// DMA to a GPU); a lease that expired before the release voids the copy and the get goes over gRPC instead.
// Puts write into the connection's window and commit. Whenever the path is not usable (not offered,
// namespace not allowed, socket gone, server restarted) the calls answer "fall back" (nullopt) and the
// path is tried again after ClientOptions.local_retry. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvtier/client/client.h"
#include "local_channel.h"

namespace kvtier {

class LocalPath {
 public:
  using InfoFn = std::function<Result<v1::LocalInfoResponse>()>;
  LocalPath(const ClientOptions& options, v1::RequestContext context, InfoFn info);
  ~LocalPath();

  // nullopt: use gRPC. An error is the call's answer (what gRPC would answer too, e.g. a too small buffer).
  // `decode` null: encoded chunks are copied as stored (GetResult.codec says which codec).
  Result<std::optional<std::vector<GetResult>>> GetBatch(std::span<const ChunkKey> keys,
                                                         std::span<const std::span<std::byte>> dests,
                                                         std::span<const std::span<const uint32_t>> expected,
                                                         const codec::DecodeOptions* decode);
  // The hits of `keys`, leased, handed to `sink` in the mapped arena (Client::GetLeased); GetBatch is this with a
  // sink that copies and verifies.
  Result<std::optional<std::vector<GetResult>>> Visit(std::span<const ChunkKey> keys,
                                                      std::span<const std::span<const uint32_t>> expected,
                                                      const LeasedChunkSink& sink, bool want_gpu = false);
  Result<std::optional<std::vector<PutResult>>> PutBatch(std::span<const ChunkPut> chunks,
                                                         std::span<const std::span<const std::byte>> payloads,
                                                         std::span<const uint64_t> checksums, codec::CodecId codec);

  LocalPathStats stats() const;
  // Why the path was last found unusable (empty when it never was).
  std::string last_fallback_reason() const;

 private:
  std::unique_ptr<LocalChannel> Acquire();
  void Return(std::unique_ptr<LocalChannel> channel);
  // Falls back to gRPC until local_retry has passed, or a minute for reasons only a server restart
  // changes (`lasting`: no path offered, another host).
  void Unusable(const Status& why, bool lasting = false);

  const ClientOptions& options_;
  const v1::RequestContext context_;
  const InfoFn info_;
  const std::string boot_id_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<LocalChannel>> idle_;     // guarded by mu_
  std::shared_ptr<SharedMapping> arena_;                // guarded by mu_
  std::optional<v1::LocalInfoResponse> server_;         // guarded by mu_; re-asked after a failure
  std::chrono::steady_clock::time_point retry_at_{};    // guarded by mu_
  std::string reason_;                                  // guarded by mu_
  std::atomic<uint64_t> gets_{0}, puts_{0}, fallbacks_{0}, expired_{0};
};

}  // namespace kvtier
