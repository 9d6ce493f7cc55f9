// Conversions between the wire messages of kvtier.v1 and the vocabulary types in types.h, and between
// kvtier::Status and grpc::Status. Stateless free functions; thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include "kvtier/api/types.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier {

ModelFingerprint FromProto(const v1::ModelFingerprint& pb);
void ToProto(const ModelFingerprint& fp, v1::ModelFingerprint* pb);

inline std::string KeyToWire(const ChunkKey& key) {
  const auto b = key.ToBytes();
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

grpc::Status ToGrpc(const Status& status);
Status FromGrpc(const grpc::Status& status);

}  // namespace kvtier
