// GetStream: reads the Get response stream as raw gRPC byte buffers and copies each data frame's
// payload straight from the received slices into the caller's destination: one copy, where parsing
// into a protobuf message would make two. Headers (small) are parsed as protobuf. An encoded chunk
// arrives into a per-thread scratch buffer and is decoded into the destination when it is complete.
//
// It uses grpc::internal::ClientReaderFactory, the same entry point generated stubs use, with a
// message type whose SerializationTraits hand over the ByteBuffer untouched. Not thread-safe; one
// stream per call.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/sync_stream.h>

#include <memory>
#include <span>
#include <vector>

#include "kvtier/api/types.h"
#include "kvtier/client/client.h"
#include "kvtier/codec/codec.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier {

struct RawGetMessage {
  grpc::ByteBuffer buffer;
};

}  // namespace kvtier

template <>
class grpc::SerializationTraits<kvtier::RawGetMessage> {
 public:
  static grpc::Status Serialize(const kvtier::RawGetMessage& msg, grpc::ByteBuffer* bb, bool* own_buffer) {
    *bb = msg.buffer;
    *own_buffer = true;
    return grpc::Status::OK;
  }
  // gRPC hands over ownership of *bb's contents and releases (not destroys) it afterwards, so it must
  // be left empty: clear the previous message first, then swap.
  static grpc::Status Deserialize(grpc::ByteBuffer* bb, kvtier::RawGetMessage* msg) {
    msg->buffer.Clear();
    msg->buffer.Swap(bb);
    return grpc::Status::OK;
  }
};

namespace kvtier {

// Deadline and credentials every call of this client carries (client.cc).
void PrepareContext(const ClientOptions& options, grpc::ClientContext* ctx);

// Decodes an encoded chunk into `dest`, setting result.bytes. DATA_LOSS for a container that does not
// parse, INVALID_ARGUMENT when `dest` is too small.
Status DecodeInto(std::span<const std::byte> encoded, std::span<std::byte> dest, const ChunkKey& key,
                  const codec::DecodeOptions& decode, GetResult& result);

// Runs one Get for `request` (keys already filled) into `dests` (one per key). Encoded chunks are decoded with
// `decode`, or land as stored when it is null (GetResult.codec). `headers`, when given, receives each hit's
// chunk header (variant fields), indexed like keys.
Result<std::vector<GetResult>> RunGetStream(grpc::Channel* channel, const grpc::internal::RpcMethod& method,
                                            const ClientOptions& options, const v1::GetRequest& request,
                                            std::span<const ChunkKey> keys, std::span<const std::span<std::byte>> dests,
                                            const codec::DecodeOptions* decode,
                                            std::vector<v1::ChunkHeader>* headers = nullptr);

}  // namespace kvtier
