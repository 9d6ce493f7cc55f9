// GetReactor: streams the answer to one Get (callback API, raw ByteBuffers).
//
// For each requested key it writes a header message, then, for a hit, data frames whose payload slice
// points straight into the host arena. A slice holds the chunk through a shared hold that is released
// when gRPC drops the slice, so eviction or deletion cannot free the bytes while they are on the wire.
// One write is outstanding at a time (the callback API's rule); the reactor deletes itself in OnDone.
// When the client asked for raw payloads, an encoded chunk is decoded into a buffer the hold owns and
// that buffer is sent instead; a chunk that cannot be decoded (its profile is gone) is answered as a miss.
// Metrics: a hold's payload counts as in-flight get bytes while it lives; a chunk's payload counts in
// kvtier_codec_bytes_total{direction="out"} (by the codec sent) once its last frame is handed to gRPC.
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>

#include <chrono>
#include <vector>

#include "kvtier/codec/codec.h"
#include "kvtier/kvstore/metrics.h"
#include "kvtier/kvstore/store.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier {

class GetReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GetReactor(Metrics* metrics, uint64_t frame_bytes, std::chrono::steady_clock::time_point start)
      : metrics_(metrics), frame_bytes_(frame_bytes), start_(start) {}

  // `decode_profiles` set: encoded chunks go out decoded to raw.
  // `extras` (empty or parallel to refs): fields merged into a hit's header (variant key, reuse metadata).
  void Start(std::vector<ChunkRef> refs, codec::ProfileResolver decode_profiles,
             std::vector<v1::ChunkHeader> extras = {});
  void Fail(const Status& status);

  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  struct SharedHold;  // a chunk shared between the reactor and the slices in flight
  void WriteNext();
  void WriteHeader(ChunkRef& ref);
  // The hold for a hit: the stored bytes, or their decoding when raw was asked for (null: undecodable).
  SharedHold* Hold(ChunkRef& ref);
  // Counts a hold's payload in kvtier_inflight_bytes{op="get"} until the hold is released.
  SharedHold* Counted(SharedHold* hold);
  void Done(const Status& status);

  Metrics* const metrics_;
  const uint64_t frame_bytes_;
  const std::chrono::steady_clock::time_point start_;
  std::vector<ChunkRef> refs_;
  std::vector<v1::ChunkHeader> extras_;
  codec::ProfileResolver decode_profiles_;
  size_t index_ = 0;         // chunk being sent
  bool header_sent_ = false;
  uint64_t offset_ = 0;      // payload bytes of the current chunk already sent
  SharedHold* hold_ = nullptr;
  grpc::ByteBuffer buffer_;  // the message in flight
  StatusCode code_ = StatusCode::kOk;
};

}  // namespace kvtier
